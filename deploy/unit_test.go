package deploy

import (
	"reflect"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		name string
		n    int
		want time.Duration
	}{
		{name: "first restart is immediate", n: 1, want: 0},
		{name: "second waits base", n: 2, want: time.Second},
		{name: "third doubles", n: 3, want: 2 * time.Second},
		{name: "fifth", n: 5, want: 8 * time.Second},
		{name: "capped", n: 30, want: time.Minute},
		{name: "zero is immediate", n: 0, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := backoff(tt.n, time.Second, time.Minute); got != tt.want {
				t.Fatalf("backoff(%d) = %s, want %s", tt.n, got, tt.want)
			}
		})
	}
}

func TestProcessArgsAndEnv(t *testing.T) {
	img := &Image{Env: []string{"PATH=/bin", "LANG=C"}, Entrypoint: []string{"/entry"}, Cmd: []string{"serve"}, Port: 8080}
	tests := []struct {
		name     string
		rel      releaseSpec
		typ      string
		wantArgs []string
		wantPort int
		wantErr  bool
	}{
		{name: "no procfile runs entrypoint and cmd", rel: releaseSpec{}, typ: "web", wantArgs: []string{"/entry", "serve"}, wantPort: 8080},
		{name: "procfile command through the shell", rel: releaseSpec{Processes: map[string]string{"web": "run $PORT"}}, typ: "web",
			wantArgs: []string{"/entry", "/bin/sh", "-c", "run $PORT"}, wantPort: 8080},
		{name: "PORT config var wins", rel: releaseSpec{Config: map[string]string{"PORT": "3000"}}, typ: "web", wantArgs: []string{"/entry", "serve"}, wantPort: 3000},
		{name: "unknown type", rel: releaseSpec{Processes: map[string]string{"web": "x"}}, typ: "worker", wantErr: true},
		{name: "web command equal to the image CMD runs in exec form", rel: releaseSpec{Processes: map[string]string{"web": "/entry serve"}}, typ: "web",
			wantArgs: []string{"/entry", "serve"}, wantPort: 8080},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, err := processArgs(&tt.rel, img, tt.typ)
			if tt.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(args, tt.wantArgs) {
				t.Fatalf("args = %q, want %q", args, tt.wantArgs)
			}
			if p := appPort(&tt.rel, img); p != tt.wantPort {
				t.Fatalf("port = %d, want %d", p, tt.wantPort)
			}
		})
	}
	env := processEnv(&releaseSpec{Config: map[string]string{"LANG": "en", "A": "1"}}, img, "web.1", 8080)
	want := []string{"PATH=/bin", "LANG=en", "PORT=8080", "DYNO=web.1", "A=1"}
	if !reflect.DeepEqual(env, want) {
		t.Fatalf("env = %q, want %q", env, want)
	}
}

func TestParseLogName(t *testing.T) {
	tests := []struct {
		name, file string
		ok         bool
		proc, id   string
		old        bool
	}{
		{name: "container log", file: "web.1-0123456789abcdef.log", ok: true, proc: "web.1", id: "0123456789abcdef"},
		{name: "rotated", file: "worker.12-0123456789abcdef.log.1", ok: true, proc: "worker.12", id: "0123456789abcdef", old: true},
		{name: "berth events", file: "berth.log", ok: true, proc: "berth"},
		{name: "temp file", file: "web.1-0123456789abcdef.log.1.tmp", ok: false},
		{name: "short id", file: "web.1-0123.log", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := parseLogName("/d", tt.file)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if ok && (f.proc != tt.proc || f.id != tt.id || f.old != tt.old) {
				t.Fatalf("got %+v", f)
			}
		})
	}
}

func TestHostTable(t *testing.T) {
	tests := []struct {
		name        string
		domain      string
		custom      map[string][]string
		want        map[string]string
		wantLeftOut []hostClaim
	}{
		{
			name:   "default names and custom domains",
			domain: "x.test",
			custom: map[string][]string{"shop": {"www.shop.example", "Shop.Example."}, "blog": nil},
			want:   map[string]string{"shop.x.test": "shop", "blog.x.test": "blog", "www.shop.example": "shop", "shop.example": "shop"},
		},
		{
			name:        "a default name beats another app's claim",
			domain:      "X.Test",
			custom:      map[string][]string{"victim": nil, "evil": {"victim.x.test"}},
			want:        map[string]string{"victim.x.test": "victim", "evil.x.test": "evil"},
			wantLeftOut: []hostClaim{{"victim.x.test", "evil"}},
		},
		{
			name:        "names under the global domain are left out",
			domain:      "x.test",
			custom:      map[string][]string{"victim": nil, "evil": {"a.victim.x.test", "x.test", "later.x.test", "evil.x.test"}},
			want:        map[string]string{"victim.x.test": "victim", "evil.x.test": "evil"},
			wantLeftOut: []hostClaim{{"a.victim.x.test", "evil"}, {"x.test", "evil"}, {"later.x.test", "evil"}, {"evil.x.test", "evil"}},
		},
		{
			name:        "a custom domain claimed twice goes to the first app by name",
			domain:      "x.test",
			custom:      map[string][]string{"b": {"shared.example"}, "a": {"shared.example"}, "c": {"SHARED.example"}},
			want:        map[string]string{"a.x.test": "a", "b.x.test": "b", "c.x.test": "c", "shared.example": "a"},
			wantLeftOut: []hostClaim{{"shared.example", "b"}, {"shared.example", "c"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The apps come from a map: build often so that every
			// iteration order is likely to have been tried.
			for range 100 {
				hosts, leftOut := hostTable(tt.domain, tt.custom)
				if !reflect.DeepEqual(hosts, tt.want) {
					t.Fatalf("hosts = %v, want %v", hosts, tt.want)
				}
				if len(leftOut) != len(tt.wantLeftOut) {
					t.Fatalf("left out %v, want %v", leftOut, tt.wantLeftOut)
				}
				for _, c := range tt.wantLeftOut {
					if leftOut[c] == "" {
						t.Fatalf("left out %v, want %v", leftOut, tt.wantLeftOut)
					}
				}
			}
		})
	}
}
