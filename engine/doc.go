// Package engine runs berth's containers directly on Linux namespaces,
// cgroups, overlayfs and veth networking.
//
// A container is created from a Spec (Create), started (Start) and then
// lives independently of the process that started it: its PID 1 is a small
// init (a re-exec of the berth binary, see MaybeInit) that reaps zombies,
// forwards signals, writes the app's stdout and stderr to a timestamped log
// file and records the exit status. A new Engine over the same Root finds
// running containers again through List and can Wait, Stop, Exec, read Logs
// and Delete them.
//
// Layout of Root: one directory per container holding config.json (the spec
// and what the engine allocated), state.json (init pid and start time),
// exit.json (exit status), log (CRI-format log), init.log (the init's own
// runtime errors), ctl.sock (Exec requests), and the container's own
// upper/work directories unless the caller supplied an UpperDir. The bridge
// IP allocations live in Root/ipam.json.
package engine
