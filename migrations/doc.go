// Package migrations embeds berth's numbered SQL schema migrations and applies them at start.
//
// Files are named NNN_description.sql, numbered from 001 without gaps; each
// runs in its own transaction (github.com/jackc/tern) and the version reached
// is recorded in VersionTable. Never edit a released migration: add the next
// number. tern evaluates each file as a Go text/template, so SQL must not
// contain "{{".
package migrations
