package builder

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
)

var procTypeRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// ParseProcfile reads a Procfile: one "type: command" per line, blank
// lines and # comments allowed. Types are letters, digits, "_" and "-";
// every type appears once and has a command. An error names the line.
func ParseProcfile(r io.Reader) (map[string]string, error) {
	procs := map[string]string{}
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line %d: %q is not \"type: command\"", ErrProcfile, n, line)
		}
		name, cmd = strings.TrimSpace(name), strings.TrimSpace(cmd)
		if !procTypeRe.MatchString(name) {
			return nil, fmt.Errorf("%w: line %d: process type %q must be letters, digits, _ or -", ErrProcfile, n, name)
		}
		if cmd == "" {
			return nil, fmt.Errorf("%w: line %d: process type %q has no command", ErrProcfile, n, name)
		}
		if prev, dup := seen[name]; dup {
			return nil, fmt.Errorf("%w: line %d: process type %q already defined on line %d", ErrProcfile, n, name, prev)
		}
		seen[name] = n
		procs[name] = cmd
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: line %d: %v", ErrProcfile, n+1, err)
	}
	if len(procs) == 0 {
		return nil, fmt.Errorf("%w: no process types; add a line like \"web: ./server\"", ErrProcfile)
	}
	return procs, nil
}

// ParseProcfileBytes is ParseProcfile over a byte slice.
func ParseProcfileBytes(b []byte) (map[string]string, error) {
	return ParseProcfile(bytes.NewReader(b))
}
