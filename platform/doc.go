// Package platform holds berth's domain: apps, releases, config vars, formation, domains, users, SSH keys, permissions, deploy and container records, and the Postgres store behind them.
//
// Every front door (SSH commands, the web dashboard and API, the local admin
// CLI) and the daemon's loops go through a *Service; none of them talks SQL.
// Methods that act for someone take an Actor: a user (from ActorForKey,
// CheckPassword, ActorForSession, ActorForAPIToken or ActorForUser) or
// System(). Admins and the system may do everything; members see and manage
// only apps they own or that were shared with them, and get not-found errors
// for the others. Methods for the daemon alone (AllDomains, AllCerts,
// SaveContainer, Containers, SetDeployStatus, LockApp, …) take no actor.
//
// Input is validated before anything is written, by the exported Validate*
// and Parse* functions that the SSH parser and web forms reuse; errors are
// *InvalidError (naming the field), *NotFoundError, *ExistsError or wrap
// ErrForbidden, ErrBadCredentials or ErrConflict, all matching the sentinels
// in errors.go with errors.Is. Uniqueness (app names, hostnames, key
// fingerprints, user names) is enforced by database constraints, so racing
// requests get an *ExistsError too.
//
// Changes to one app's config, formation and releases are serialized by a
// per-app transaction advisory lock, so concurrent config:set calls make
// consecutive releases that each include the earlier change. Rollouts are
// serialized by a separate per-app lock held through LockApp or WithAppLock.
//
// Config var values are secrets: they are never logged or put in errors,
// and ConfigVars prints only names.
package platform
