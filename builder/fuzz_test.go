package builder

import (
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
