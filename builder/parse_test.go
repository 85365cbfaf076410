package builder

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDockerfile(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		wantErr string // substring; empty means success
		check   func(t *testing.T, p *Plan)
	}{
		{
			name: "all supported instructions",
			src: `ARG BASE=busybox
FROM $BASE AS build
ARG V=1
ENV A=1 B="two words"
WORKDIR /src
COPY --chown=1000:1000 --chmod=0644 a.txt b/ /src/
ADD pkg.tar.gz /opt/
RUN echo hi && \
    echo there
RUN ["/bin/echo", "exec"]
USER nobody
EXPOSE 8080 53/udp
LABEL org.example=1
STOPSIGNAL SIGINT
FROM scratch
COPY --from=build /src /app
ENTRYPOINT ["/app/run"]
CMD serve
`,
			check: func(t *testing.T, p *Plan) {
				if len(p.MetaArgs) != 1 || p.MetaArgs[0].Name != "BASE" {
					t.Fatalf("meta args %+v", p.MetaArgs)
				}
				if len(p.Stages) != 2 || p.Stages[0].Name != "build" || p.Stages[1].Base != "scratch" {
					t.Fatalf("stages %+v", p.Stages)
				}
				s := p.Stages[0].Steps
				if s[4].Kind != "ADD" || s[3].Chown != "1000:1000" || s[3].Chmod != "0644" || len(s[3].Sources) != 2 {
					t.Fatalf("copy step %+v", s[3])
				}
				if s[5].Kind != "RUN" || !s[5].Shell || s[5].Line != 8 {
					t.Fatalf("run step %+v", s[5])
				}
				if s[6].Shell || strings.Join(s[6].Cmd, " ") != "/bin/echo exec" {
					t.Fatalf("exec run %+v", s[6])
				}
				if p.Stages[1].Steps[0].From != "build" {
					t.Fatalf("copy --from %+v", p.Stages[1].Steps[0])
				}
			},
		},
		{name: "unsupported instruction names line", src: "FROM busybox\nRUN true\nHEALTHCHECK CMD true\n", wantErr: "line 3: HEALTHCHECK is not supported"},
		{name: "volume unsupported", src: "FROM busybox\nVOLUME /data\n", wantErr: "line 2: VOLUME is not supported"},
		{name: "onbuild unsupported", src: "FROM busybox\n\nONBUILD RUN true\n", wantErr: "line 3: ONBUILD is not supported"},
		{name: "unknown instruction", src: "FROM busybox\nFROBNICATE x\n", wantErr: "line 2: unknown instruction FROBNICATE"},
		{name: "run mount", src: "FROM busybox\nRUN --mount=type=cache,target=/x true\n", wantErr: "line 2: RUN --mount is not supported"},
		{name: "add url", src: "FROM busybox\nADD https://example.com/x /x\n", wantErr: "line 2: ADD from a URL"},
		{name: "copy needs dest", src: "FROM busybox\nCOPY onlyone\n", wantErr: "line 2: COPY"},
		{name: "no from", src: "ARG X=1\n", wantErr: "no FROM"},
		{name: "empty file", src: "# nothing\n", wantErr: "line 1: file with no instructions"},
		{name: "instruction before from", src: "RUN true\nFROM busybox\n", wantErr: "line 1: RUN before the first FROM"},
		{name: "copy from later stage", src: "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n", wantErr: "line 2: COPY --from=b refers to this or a later stage"},
		{name: "duplicate stage", src: "FROM busybox AS a\nFROM busybox AS a\n", wantErr: "line 2: stage name \"a\" is already used on line 1"},
		{name: "heredoc", src: "FROM busybox\nRUN <<EOF\necho hi\nEOF\n", wantErr: "line 2: heredocs are not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseDockerfile(strings.NewReader(tt.src))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrDockerfile) {
					t.Fatalf("err = %v, want ErrDockerfile containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, p)
		})
	}
}

func TestParseProcfile(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    map[string]string
		wantErr string
	}{
		{name: "two types", src: "web: python3 app.py --port $PORT\nworker: ./work\n", want: map[string]string{"web": "python3 app.py --port $PORT", "worker": "./work"}},
		{name: "comments and blanks", src: "# procs\n\nweb:   ./serve   \n", want: map[string]string{"web": "./serve"}},
		{name: "colon in command", src: "web: bash -c 'echo a:b'\n", want: map[string]string{"web": "bash -c 'echo a:b'"}},
		{name: "missing colon", src: "web: ok\njust a command\n", wantErr: "line 2: \"just a command\" is not"},
		{name: "empty command", src: "web:\n", wantErr: "line 1: process type \"web\" has no command"},
		{name: "bad type", src: "we b: x\n", wantErr: "line 1: process type \"we b\""},
		{name: "duplicate", src: "web: a\nweb: b\n", wantErr: "line 2: process type \"web\" already defined on line 1"},
		{name: "empty", src: "# nothing\n", wantErr: "no process types"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcfileBytes([]byte(tt.src))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrProcfile) {
					t.Fatalf("err = %v, want ErrProcfile containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestAptSources(t *testing.T) {
	tests := []struct {
		name, list, deb822, suite, want, wantErr string
	}{
		{
			name:   "deb822 like this host",
			deb822: "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n",
			suite:  "bookworm", want: "http://mirror.example/debian",
		},
		{
			name:  "one-line with options",
			list:  "# comment\ndeb-src http://src.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://one.example/debian/ bookworm main contrib\n",
			suite: "bookworm", want: "http://one.example/debian",
		},
		{
			name:  "suite missing",
			list:  "deb http://one.example/debian bullseye main\n",
			suite: "bookworm", wantErr: "none serves bookworm main",
		},
		{
			name:   "disabled stanza skipped",
			deb822: "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n\nTypes: deb\nURIs: http://on.example/debian\nSuites: bookworm\nComponents: main\n",
			suite:  "bookworm", want: "http://on.example/debian",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755); err != nil {
				t.Fatal(err)
			}
			if tt.list != "" {
				if err := os.WriteFile(filepath.Join(dir, "sources.list"), []byte(tt.list), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.deb822 != "" {
				if err := os.WriteFile(filepath.Join(dir, "sources.list.d", "debian.sources"), []byte(tt.deb822), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// A disabled leftover must be ignored.
			if err := os.WriteFile(filepath.Join(dir, "sources.list.d", "x.list.disabled"), []byte("deb http://bad.example/debian bookworm main\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			srcs, err := HostAptSources(dir)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DebianMirror(srcs, tt.suite)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("mirror = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestDetectBuildpack(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		want     string
		wantErr  error
		errMatch string
	}{
		{name: "python", files: map[string]string{"requirements.txt": "", "Procfile": "web: python3 app.py\n"}, want: "python"},
		{name: "go", files: map[string]string{"go.mod": "module x\n", "Procfile": "web: x\n"}, want: "go"},
		{name: "node", files: map[string]string{"package.json": "{}", "Procfile": "web: node s.js\n"}, want: "node"},
		{name: "static", files: map[string]string{"index.html": "<p>hi", "Procfile": "web: busybox httpd -f -p $PORT\n"}, want: "static"},
		{name: "no procfile", files: map[string]string{"requirements.txt": ""}, wantErr: ErrProcfile, errMatch: "python app has no Procfile"},
		{name: "bad procfile", files: map[string]string{"requirements.txt": "", "Procfile": "web python3 app.py\n"}, wantErr: ErrProcfile, errMatch: "line 1"},
		{name: "nothing known", files: map[string]string{"README": "x", "Procfile": "web: x\n"}, wantErr: ErrNoBuildpack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, c := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			bp, procs, err := DetectBuildpack(dir)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errMatch) {
					t.Fatalf("err = %v, want %v with %q", err, tt.wantErr, tt.errMatch)
				}
				return
			}
			if err != nil || bp.Name != tt.want || procs["web"] == "" {
				t.Fatalf("got %s %v %v", bp.Name, procs, err)
			}
			// The rendered Dockerfile must pass the same parser as users'.
			if _, err := ParseDockerfile(strings.NewReader(bp.Dockerfile("debian:bookworm"))); err != nil {
				t.Fatalf("buildpack Dockerfile does not parse: %v", err)
			}
		})
	}
}

func TestProcessArgs(t *testing.T) {
	withProcfile := &Image{Processes: map[string]string{"web": "./serve --port $PORT", "worker": "./work"}}
	dockerOnly := &Image{}
	dockerOnly.Config.Entrypoint = []string{"/app/run"}
	dockerOnly.Config.Cmd = []string{"--flag"}
	tests := []struct {
		name    string
		img     *Image
		typ     string
		want    string
		wantErr bool
	}{
		{"procfile web", withProcfile, "web", "/bin/sh|-c|./serve --port $PORT", false},
		{"procfile worker", withProcfile, "worker", "/bin/sh|-c|./work", false},
		{"procfile missing type", withProcfile, "clock", "", true},
		{"entrypoint and cmd", dockerOnly, "web", "/app/run|--flag", false},
		{"no procfile, other type", dockerOnly, "worker", "", true},
		{"nothing to run", &Image{}, "web", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.img.ProcessArgs(tt.typ)
			if tt.wantErr {
				if !errors.Is(err, ErrNoProcess) {
					t.Fatalf("err = %v, want ErrNoProcess", err)
				}
				return
			}
			if err != nil || strings.Join(got, "|") != tt.want {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
	if got := strings.Join(withProcfile.ProcessTypes(), ","); got != "web,worker" {
		t.Fatalf("types %s", got)
	}
}
