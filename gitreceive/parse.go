package gitreceive

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// maxArgs and maxArgLen bound what one command line may carry; anything
// larger is refused before it reaches the handlers.
const (
	maxArgs   = 256
	maxArgLen = 64 << 10
)

// spec describes one command of the set: how it is called and what it does.
type spec struct {
	name    string
	usage   string // arguments, e.g. "APP KEY=VALUE…"
	summary string // one line for help
	minArgs int
	maxArgs int // -1: no upper bound
	admin   bool
	// passthrough: after the first positional argument, the rest of the
	// line is kept verbatim (run APP CMD…).
	passthrough bool
	// flags declares the command's flags on fs; values land in inv.flags.
	flags func(fs *flag.FlagSet, inv *Invocation)
	run   func(c *Commands, inv *Invocation) error
}

// Invocation is one parsed command line.
type Invocation struct {
	spec *spec
	// Args are the positional arguments after flags.
	Args []string
	// bool and string flags, by name.
	bools   map[string]*bool
	strings map[string]*string
	ints    map[string]*int

	ctx   context.Context
	actor Actor
	env   *Env
}

// Name is the command's canonical name.
func (inv *Invocation) Name() string { return inv.spec.name }

func (inv *Invocation) boolFlag(fs *flag.FlagSet, name string, usage string) {
	if inv.bools == nil {
		inv.bools = map[string]*bool{}
	}
	inv.bools[name] = fs.Bool(name, false, usage)
}

func (inv *Invocation) stringFlag(fs *flag.FlagSet, name, def, usage string) {
	if inv.strings == nil {
		inv.strings = map[string]*string{}
	}
	inv.strings[name] = fs.String(name, def, usage)
}

func (inv *Invocation) intFlag(fs *flag.FlagSet, name string, def int, usage string) {
	if inv.ints == nil {
		inv.ints = map[string]*int{}
	}
	inv.ints[name] = fs.Int(name, def, usage)
}

// Bool returns a boolean flag's value.
func (inv *Invocation) Bool(name string) bool {
	if p, ok := inv.bools[name]; ok {
		return *p
	}
	return false
}

// String returns a string flag's value.
func (inv *Invocation) String(name string) string {
	if p, ok := inv.strings[name]; ok {
		return *p
	}
	return ""
}

// Int returns an integer flag's value.
func (inv *Invocation) Int(name string) int {
	if p, ok := inv.ints[name]; ok {
		return *p
	}
	return 0
}

// UsageError reports a command line that does not fit its command.
type UsageError struct {
	Command string // empty when the command itself is unknown
	Msg     string
}

func (e *UsageError) Error() string {
	if e.Command == "" {
		return e.Msg
	}
	return e.Command + ": " + e.Msg
}

// ErrUsage matches every *UsageError with errors.Is.
var ErrUsage = errors.New("usage error")

// Is makes errors.Is(err, ErrUsage) true for usage errors.
func (e *UsageError) Is(target error) bool { return target == ErrUsage }

// aliases maps Dokku's and Heroku's other spellings to canonical names.
var aliases = map[string]string{
	"apps":          "apps:list",
	"apps:delete":   "apps:destroy",
	"ps":            "ps:report",
	"domains":       "domains:list",
	"keys":          "keys:list",
	"users":         "users:list",
	"config:show":   "config",
	"releases:list": "releases",
	"--version":     "version",
	"-v":            "version",
	"--help":        "help",
	"-h":            "help",
	"certs":         "certs:list",
}

// parse turns a command line into an Invocation for one of specs. It checks
// the command name, flags and argument counts, never runs anything, and
// never panics on any input.
func parse(specs map[string]*spec, args []string) (*Invocation, error) {
	if len(args) == 0 {
		args = []string{"help"}
	}
	if len(args) > maxArgs {
		return nil, &UsageError{Msg: fmt.Sprintf("too many arguments (%d; at most %d)", len(args), maxArgs)}
	}
	for _, a := range args {
		if len(a) > maxArgLen {
			return nil, &UsageError{Msg: fmt.Sprintf("an argument of %d bytes is too long (at most %d)", len(a), maxArgLen)}
		}
		if strings.IndexByte(a, 0) >= 0 {
			return nil, &UsageError{Msg: "arguments must not contain NUL bytes"}
		}
	}
	name := args[0]
	if canon, ok := aliases[name]; ok {
		name = canon
	}
	sp, ok := specs[name]
	if !ok {
		return nil, &UsageError{Msg: fmt.Sprintf("unknown command %q; `help` lists the commands", truncate(args[0], 64))}
	}
	inv := &Invocation{spec: sp}
	fs := flag.NewFlagSet(sp.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if sp.flags != nil {
		sp.flags(fs, inv)
	}
	// Flags may come before or after positional arguments, as Dokku allows
	// (`logs APP -t`); "--" ends flags. A passthrough command (run APP CMD…)
	// takes everything after its first positional argument verbatim, but for
	// a "--" right after it.
	rest := args[1:]
	var tail []string
	if !sp.passthrough {
		for i, a := range rest {
			if a == "--" {
				tail = rest[i+1:]
				rest = rest[:i]
				break
			}
		}
	}
	var pos []string
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return nil, &UsageError{Command: sp.name, Msg: flagError(err) + "; usage: " + sp.name + " " + sp.usage}
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		if sp.passthrough {
			// `run APP -- CMD…`, as with heroku run: the "--" ends
			// berth's arguments and is not part of the command.
			pos = append(pos, rest[0])
			if cmd := rest[1:]; len(cmd) > 0 && cmd[0] == "--" {
				rest = cmd[1:]
			} else {
				rest = cmd
			}
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		rest = rest[1:]
	}
	pos = append(pos, tail...)
	if len(pos) < sp.minArgs {
		return nil, &UsageError{Command: sp.name, Msg: "missing arguments; usage: " + sp.name + " " + sp.usage}
	}
	if sp.maxArgs >= 0 && len(pos) > sp.maxArgs {
		return nil, &UsageError{Command: sp.name, Msg: fmt.Sprintf("unexpected argument %q; usage: %s %s", truncate(pos[sp.maxArgs], 64), sp.name, sp.usage)}
	}
	inv.Args = pos
	return inv, nil
}

func flagError(err error) string {
	if errors.Is(err, flag.ErrHelp) {
		return "help is the `help` command"
	}
	return err.Error()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// helpText lists every command with its usage and one-line description.
func helpText(specs map[string]*spec, admin bool) string {
	names := make([]string, 0, len(specs))
	for n, sp := range specs {
		if sp.admin && !admin {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	width := 0
	lines := make([]string, len(names))
	for i, n := range names {
		sp := specs[n]
		lines[i] = strings.TrimSpace(n + " " + sp.usage)
		width = max(width, len(lines[i]))
	}
	var b strings.Builder
	b.WriteString("Usage: berth COMMAND [ARGS…]  (or: ssh -p PORT berth@HOST COMMAND [ARGS…])\n\nCommands:\n")
	for i, n := range names {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, lines[i], specs[n].summary)
	}
	return b.String()
}
