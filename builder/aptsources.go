package builder

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// AptSource is one "deb" entry of the host's apt configuration.
type AptSource struct {
	// URI is the mirror, e.g. http://deb.debian.org/debian.
	URI string
	// Suites are the releases it serves, e.g. bookworm.
	Suites []string
	// Components are the archive areas, e.g. main.
	Components []string
}

// ParseAptSources reads one-line style entries ("deb [opts] URI suite
// comp...") from a sources.list file.
func ParseAptSources(r io.Reader) ([]AptSource, error) {
	var out []AptSource
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // options: [arch=amd64 signed-by=...]
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				continue
			}
			f = f[1:]
		}
		if len(f) < 2 {
			continue
		}
		out = append(out, AptSource{URI: f[0], Suites: []string{f[1]}, Components: f[2:]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read apt sources: %w", err)
	}
	return out, nil
}

// ParseDeb822Sources reads deb822 style stanzas (*.sources files).
func ParseDeb822Sources(r io.Reader) ([]AptSource, error) {
	var out []AptSource
	fields := map[string]string{}
	flush := func() {
		defer clear(fields)
		types := strings.Fields(fields["types"])
		isDeb := false
		for _, t := range types {
			isDeb = isDeb || t == "deb"
		}
		if !isDeb || strings.EqualFold(fields["enabled"], "no") {
			return
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			out = append(out, AptSource{URI: uri, Suites: strings.Fields(fields["suites"]), Components: strings.Fields(fields["components"])})
		}
	}
	sc := bufio.NewScanner(r)
	last := ""
	for sc.Scan() {
		raw := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(raw), "#") {
			continue
		}
		if strings.TrimSpace(raw) == "" {
			flush()
			last = ""
			continue
		}
		if (raw[0] == ' ' || raw[0] == '\t') && last != "" { // continuation
			fields[last] += " " + strings.TrimSpace(raw)
			continue
		}
		k, v, ok := strings.Cut(raw, ":")
		if !ok {
			continue
		}
		last = strings.ToLower(strings.TrimSpace(k))
		fields[last] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read apt sources: %w", err)
	}
	flush()
	return out, nil
}

// HostAptSources reads the host's apt sources under etcApt (normally
// /etc/apt): sources.list, then sources.list.d/*.list and *.sources.
func HostAptSources(etcApt string) ([]AptSource, error) {
	var out []AptSource
	read := func(path string, parse func(io.Reader) ([]AptSource, error)) error {
		f, err := os.Open(path)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		defer f.Close()
		s, err := parse(f)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		out = append(out, s...)
		return nil
	}
	if err := read(filepath.Join(etcApt, "sources.list"), ParseAptSources); err != nil {
		return nil, err
	}
	files, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", "*"))
	sort.Strings(files)
	for _, f := range files {
		switch {
		case strings.HasSuffix(f, ".list"):
			if err := read(f, ParseAptSources); err != nil {
				return nil, err
			}
		case strings.HasSuffix(f, ".sources"):
			if err := read(f, ParseDeb822Sources); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// DebianMirror picks, from the host's apt sources, the mirror that serves
// suite with the main component.
func DebianMirror(sources []AptSource, suite string) (string, error) {
	for _, s := range sources {
		hasSuite, hasMain := false, false
		for _, su := range s.Suites {
			hasSuite = hasSuite || su == suite
		}
		for _, c := range s.Components {
			hasMain = hasMain || c == "main"
		}
		if hasSuite && hasMain {
			return strings.TrimSuffix(s.URI, "/"), nil
		}
	}
	return "", fmt.Errorf("%w: none serves %s main; add one to /etc/apt/sources.list", ErrNoMirror, suite)
}
