// Package migrations embeds berth's numbered SQL schema migrations and applies them at start.
package migrations
