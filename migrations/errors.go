package migrations

import "errors"

// ErrSchemaTooNew is returned by Apply when the database's schema version is
// higher than the newest migration this binary embeds: a newer berth has
// used the database, and running an older one against it could corrupt data.
var ErrSchemaTooNew = errors.New("database schema is newer than this berth")
