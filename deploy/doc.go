// Package deploy keeps every app's containers in line with its deployed
// release and formation: it rolls releases out without a failed request,
// scales process types, restarts crashed instances with backoff,
// reconciles after a daemon restart, keeps the per-app logs and owns the
// router's table.
//
// A rollout starts the formation's instances of the new release (each gets
// PORT, DYNO=type.N and the config vars), checks the web instances (the
// port answers HTTP, then app.json "healthchecks" or a CHECKS file), swaps
// the routing table to them in one step, and only then takes the old
// instances out: out of the table, a drain pause, SIGTERM, SIGKILL after
// the stop timeout. A failed check removes the new instances and leaves
// the old ones serving; the error carries the reason and the output tail.
//
// Containers carry labels (app, type, instance, release, port, log name),
// so a new Deployer over the same engine root finds them again: Start
// re-adopts running instances of each app's deployed release without
// restarting them, removes strays and starts what is missing. The desired
// state (deployed release, formation, stopped flag, domains, certificates)
// comes from platform; container records go back to it for the dashboard.
//
// Every container writes its log straight into DATA/logs/APP (see logs.go),
// so lines survive redeploys and daemon restarts; ReadLogs merges the files
// by time and follows new ones.
package deploy
