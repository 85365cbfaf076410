// Package engine runs berth's containers directly on Linux namespaces,
// cgroups, overlayfs and veth networking.
//
// A container is created from a Spec (Create), started (Start) and then
// lives independently of the process that started it: its PID 1 is a small
// init that reaps zombies, forwards signals, writes the app's stdout and
// stderr to a timestamped log file, serves Exec requests and records the
// exit status. The init is a re-exec of the berth binary whose C
// constructor (init_linux.c) takes over before the Go runtime starts, so
// building the engine needs cgo (gcc). A new Engine over the same Root finds
// running containers again through List and can Wait, Stop, Exec, read Logs
// and Delete them.
//
// Layout of Root: one directory per container holding config.json (the spec
// and what the engine allocated), state.json (init pid and start time),
// exit.json (exit status), log (CRI-format log), init.log (the init's own
// stderr), ctl.sock (Exec requests), and the container's own
// upper/work directories unless the caller supplied an UpperDir. The bridge
// IP allocations live in Root/ipam.json.
package engine
