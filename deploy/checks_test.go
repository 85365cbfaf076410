package deploy

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestParseChecksFile(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Check
		wantErr bool
	}{
		{
			name: "settings and paths",
			in:   "# comment\nWAIT=2\nTIMEOUT=3\nATTEMPTS=4\n\n/ Welcome\n//example.com/health ok go\n/plain\n",
			want: []Check{
				{Name: "GET /", Path: "/", Content: "Welcome", Attempts: 4, Timeout: 3 * time.Second, Wait: time.Second, InitialDelay: 2 * time.Second},
				{Name: "GET /health", Path: "/health", Content: "ok go", Attempts: 4, Timeout: 3 * time.Second, Wait: time.Second, InitialDelay: 2 * time.Second},
				{Name: "GET /plain", Path: "/plain", Attempts: 4, Timeout: 3 * time.Second, Wait: time.Second, InitialDelay: 2 * time.Second},
			},
		},
		{
			name: "defaults",
			in:   "/x\n",
			want: []Check{{Name: "GET /x", Path: "/x", Attempts: 3, Timeout: 5 * time.Second, Wait: time.Second}},
		},
		{name: "host only", in: "//example.com\n", want: []Check{{Name: "GET /", Path: "/", Attempts: 3, Timeout: 5 * time.Second, Wait: time.Second}}},
		{name: "unknown setting", in: "FOO=1\n", wantErr: true},
		{name: "bad number", in: "WAIT=soon\n", wantErr: true},
		{name: "not a path", in: "health ok\n", wantErr: true},
		{name: "empty", in: "", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseChecksFile([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidChecks) {
					t.Fatalf("err = %v, want ErrInvalidChecks", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseAppJSONChecks(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		typ     string
		want    []Check
		wantErr bool
	}{
		{
			name: "web path and command",
			in: `{"healthchecks":{"web":[{"type":"startup","name":"root","path":"/","content":"hi","attempts":2,"timeout":1.5,"wait":0.5,"initialDelay":1},
				{"type":"startup","command":"test -f /ready"},{"command":["true"]}]}}`,
			typ: "web",
			want: []Check{
				{Name: "root", Path: "/", Content: "hi", Attempts: 2, Timeout: 1500 * time.Millisecond, Wait: 500 * time.Millisecond, InitialDelay: time.Second},
				{Name: "command /bin/sh -c test -f /ready", Command: []string{"/bin/sh", "-c", "test -f /ready"}, Attempts: 3, Timeout: 5 * time.Second, Wait: time.Second},
				{Name: "command true", Command: []string{"true"}, Attempts: 3, Timeout: 5 * time.Second, Wait: time.Second},
			},
		},
		{name: "other type", in: `{"healthchecks":{"web":[{"path":"/"}]}}`, typ: "worker", want: nil},
		{name: "no healthchecks", in: `{"name":"x"}`, typ: "web", want: nil},
		{name: "default path", in: `{"healthchecks":{"web":[{}]}}`, typ: "web",
			want: []Check{{Name: "GET /", Path: "/", Attempts: 3, Timeout: 5 * time.Second, Wait: time.Second}}},
		{name: "bad type", in: `{"healthchecks":{"web":[{"type":"sometimes"}]}}`, typ: "web", wantErr: true},
		{name: "bad path", in: `{"healthchecks":{"web":[{"path":"health"}]}}`, typ: "web", wantErr: true},
		{name: "bad command", in: `{"healthchecks":{"web":[{"command":3}]}}`, typ: "web", wantErr: true},
		{name: "not json", in: `{`, typ: "web", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAppJSONChecks([]byte(tt.in), tt.typ)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidChecks) {
					t.Fatalf("err = %v, want ErrInvalidChecks", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestChecksForPrefersAppJSON(t *testing.T) {
	img := &Image{
		AppJSON: []byte(`{"healthchecks":{"web":[{"path":"/a"}]}}`),
		Checks:  []byte("/b\n"),
	}
	cs, err := checksFor(img, "web")
	if err != nil || len(cs) != 1 || cs[0].Path != "/a" {
		t.Fatalf("checksFor = %+v, %v; want app.json's /a", cs, err)
	}
	img.AppJSON = []byte(`{}`)
	cs, err = checksFor(img, "web")
	if err != nil || len(cs) != 1 || cs[0].Path != "/b" {
		t.Fatalf("checksFor = %+v, %v; want CHECKS' /b", cs, err)
	}
	cs, err = checksFor(img, "worker")
	if err != nil || len(cs) != 0 {
		t.Fatalf("checksFor(worker) = %+v, %v; want none", cs, err)
	}
}

func FuzzParseChecksFile(f *testing.F) {
	f.Add([]byte("WAIT=1\n/ ok\n"))
	f.Add([]byte("//host\n# x\nATTEMPTS=3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := ParseChecksFile(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidChecks) {
				t.Fatalf("error %v does not wrap ErrInvalidChecks", err)
			}
			return
		}
		for _, c := range cs {
			if len(c.Path) == 0 || c.Path[0] != '/' || c.Attempts <= 0 {
				t.Fatalf("bad check %+v", c)
			}
		}
	})
}
