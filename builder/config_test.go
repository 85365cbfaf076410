//go:build linux

package builder

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestConfigInstructions(t *testing.T) {
	s := newTestStore(t)
	if _, err := s.ImportImage(context.Background(), busyboxImage(t), "busybox", nil); err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	df := `ARG TAG=latest
FROM busybox:${TAG}
ARG NAME=world
ENV A=1
ENV A=2 B=$A
ENV GREETING="hello ${NAME}"
WORKDIR /srv
WORKDIR app
EXPOSE 8080 53/udp
LABEL org.example.name=$NAME "two words"=yes
USER nobody:nogroup
STOPSIGNAL SIGINT
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT exec ./run
CMD ["--flag"]
`
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Procfile"), []byte("web: ./run --port $PORT\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := b.Build(context.Background(), BuildRequest{App: "cfg", ContextDir: dir, BuildArgs: map[string]string{"NAME": "berth"}})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Image.Config
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"env same line sees the old value", strings.Join(c.Env, " "), defaultPath + " A=2 B=1 GREETING=hello berth"},
		{"workdir relative to the previous", c.WorkingDir, "/srv/app"},
		{"ports", len(c.ExposedPorts), 2},
		{"udp port", func() bool { _, ok := c.ExposedPorts["53/udp"]; return ok }(), true},
		{"label expanded", c.Labels["org.example.name"], "berth"},
		{"quoted label", c.Labels["two words"], "yes"},
		{"user", c.User, "nobody:nogroup"},
		{"stop signal", c.StopSignal, "SIGINT"},
		{"shell-form entrypoint uses SHELL", strings.Join(c.Entrypoint, "|"), "/bin/sh|-ec|exec ./run"},
		{"cmd after entrypoint", slices.Equal(c.Cmd, []string{"--flag"}), true},
		{"procfile", res.Image.Processes["web"], "./run --port $PORT"},
		{"history has every step", len(res.Image.History), 1 + 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
	// WORKDIR made its directories as a layer.
	if _, dirs, err := s.Lookup("cfg"); err != nil || len(dirs) != 3 {
		t.Fatalf("layers %v, %v; want busybox + two WORKDIR layers", dirs, err)
	}
}
