// Package platform holds berth's domain: apps, releases, config vars, formation, domains, users, SSH keys, permissions, deploy and container records, and the Postgres store behind them.
package platform
