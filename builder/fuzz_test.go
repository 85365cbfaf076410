package builder

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParseProcfile checks that any input either parses into valid process
// types with commands or fails with ErrProcfile; seeds are in
// testdata/fuzz/FuzzParseProcfile.
func FuzzParseProcfile(f *testing.F) {
	f.Add([]byte("web: ./server --port $PORT\nworker: ./work\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		procs, err := ParseProcfileBytes(data)
		if err != nil {
			if procs != nil {
				t.Fatal("error with a result")
			}
			return
		}
		if len(procs) == 0 {
			t.Fatal("success without process types")
		}
		for name, cmd := range procs {
			if !procTypeRe.MatchString(name) || strings.TrimSpace(cmd) != cmd || cmd == "" {
				t.Fatalf("bad entry %q: %q", name, cmd)
			}
		}
	})
}

// FuzzParseDockerfile checks that any input either becomes a consistent
// plan or fails with ErrDockerfile; seeds are in
// testdata/fuzz/FuzzParseDockerfile.
func FuzzParseDockerfile(f *testing.F) {
	f.Add([]byte("FROM busybox AS build\nRUN echo hi\nFROM scratch\nCOPY --from=build /x /x\nCMD [\"/x\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseDockerfileBytes(data)
		if err != nil {
			return
		}
		if len(p.Stages) == 0 {
			t.Fatal("plan without stages")
		}
		for i, st := range p.Stages {
			if st.Base == "" || st.Line <= 0 {
				t.Fatalf("stage %d: %+v", i, st)
			}
			if j := p.stageIndex(st.Base); j >= i {
				t.Fatalf("stage %d builds on later stage %d", i, j)
			}
			for _, s := range st.Steps {
				if s.Line < st.Line || s.Kind == "" {
					t.Fatalf("step %+v", s)
				}
				switch s.Kind {
				case "RUN":
					if len(s.Cmd) == 0 {
						t.Fatalf("RUN without command at line %d", s.Line)
					}
				case "COPY", "ADD":
					if len(s.Sources) == 0 || s.Dest == "" {
						t.Fatalf("%s without sources or dest at line %d", s.Kind, s.Line)
					}
				}
			}
		}
	})
}

// FuzzResolveExecUser checks that any USER against any /etc/passwd and
// /etc/group either fails with an error or resolves to IDs a container can
// carry, with memberships only from well-formed group lines; seeds are in
// testdata/fuzz/FuzzResolveExecUser.
func FuzzResolveExecUser(f *testing.F) {
	f.Add("app", []byte(testPasswd), []byte(testGroup))
	f.Fuzz(func(t *testing.T, spec string, passwd, group []byte) {
		groups := parseGroup(group)
		for _, g := range groups {
			if g.name == "" || strings.ContainsAny(g.name, ":\n") || slices.Contains(g.members, "") {
				t.Fatalf("malformed entry %+v kept", g)
			}
		}
		u, err := resolveExecUser(spec, passwd, group, false)
		if err != nil {
			return
		}
		if u.UID > maxContainerID || u.GID > maxContainerID || len(u.Groups) == 0 || u.Groups[0] != u.GID {
			t.Fatalf("%q resolved to %+v", spec, u)
		}
		if _, grp, _ := strings.Cut(spec, ":"); grp != "" && len(u.Groups) != 1 {
			t.Fatalf("%q names a group but got memberships %v", spec, u.Groups)
		}
		seen := map[uint32]bool{}
		for i, g := range u.Groups {
			if g > maxContainerID || seen[g] {
				t.Fatalf("%q: groups %v", spec, u.Groups)
			}
			seen[g] = true
			if i > 0 && !slices.ContainsFunc(groups, func(e groupEntry) bool { return e.gid == g && len(e.members) > 0 }) {
				t.Fatalf("%q: group %d is on no well-formed line with members", spec, g)
			}
		}
	})
}
