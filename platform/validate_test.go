package platform

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestValidateAppName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; "" means valid
	}{
		{name: "simple", in: "myapp"},
		{name: "digits and dashes", in: "my-app-2"},
		{name: "thirty chars", in: strings.Repeat("a", 30)},
		{name: "empty", in: "", wantErr: "give a name"},
		{name: "thirty one chars", in: strings.Repeat("a", 31), wantErr: "at most 30"},
		{name: "uppercase", in: "MyApp", wantErr: "lowercase"},
		{name: "starts with digit", in: "1app", wantErr: "starting with a letter"},
		{name: "starts with dash", in: "-app", wantErr: "starting with a letter"},
		{name: "underscore", in: "my_app", wantErr: "lowercase letters, digits and dashes"},
		{name: "dot", in: "my.app", wantErr: "lowercase letters"},
		{name: "trailing dash", in: "app-", wantErr: "end with a dash"},
		{name: "reserved", in: "berth", wantErr: "reserved"},
		{name: "unicode", in: "äpp", wantErr: "lowercase"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateAppName(tt.in)
			checkErr(t, err, tt.wantErr, "app name")
		})
	}
}

// checkErr checks err against want (a substring, "" for no error) and that
// an error is an *InvalidError naming field.
func checkErr(t *testing.T, err error, want, field string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	var inv *InvalidError
	if !errors.As(err, &inv) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v is not an *InvalidError", err)
	}
	if inv.Field != field {
		t.Fatalf("error names field %q, want %q", inv.Field, field)
	}
}

func TestValidateHostname(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "simple", in: "app.example.com", want: "app.example.com"},
		{name: "uppercase is lowered", in: "App.Example.COM", want: "app.example.com"},
		{name: "trailing dot", in: "example.com.", want: "example.com"},
		{name: "single label", in: "localhost", want: "localhost"},
		{name: "punycode", in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{name: "dash inside", in: "my-app.example.com", want: "my-app.example.com"},
		{name: "empty", in: "", wantErr: "give a hostname"},
		{name: "ip", in: "10.0.0.1", wantErr: "IP addresses"},
		{name: "ipv6", in: "::1", wantErr: "without scheme, port"},
		{name: "numeric tld", in: "foo.123", wantErr: "all digits"},
		{name: "wildcard", in: "*.example.com", wantErr: "wildcard"},
		{name: "scheme", in: "http://example.com", wantErr: "without scheme"},
		{name: "port", in: "example.com:80", wantErr: "without scheme, port"},
		{name: "double dot", in: "a..example.com", wantErr: "empty label"},
		{name: "leading dash label", in: "-a.example.com", wantErr: "do not start or end with a dash"},
		{name: "underscore", in: "a_b.example.com", wantErr: "letters, digits and dashes"},
		{name: "long label", in: strings.Repeat("a", 64) + ".com", wantErr: "63"},
		{name: "too long", in: strings.Repeat("a.", 127) + "com", wantErr: "253"},
		{name: "unicode", in: "bücher.example", wantErr: "punycode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ValidateHostname(tt.in)
			checkErr(t, err, tt.wantErr, "hostname")
			if err == nil && got != tt.want {
				t.Fatalf("ValidateHostname(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidateProcessType(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "web", in: "web"},
		{name: "underscore", in: "worker_2"},
		{name: "dash", in: "release-phase"},
		{name: "empty", in: "", wantErr: "give a process type"},
		{name: "upper", in: "Web", wantErr: "lowercase"},
		{name: "space", in: "web worker", wantErr: "lowercase"},
		{name: "too long", in: strings.Repeat("w", 31), wantErr: "at most 30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, ValidateProcessType(tt.in), tt.wantErr, "process type")
		})
	}
}

func TestParseLimit(t *testing.T) {
	tests := []struct {
		name    string
		limit   string
		in      string
		want    int64
		wantErr string
	}{
		{name: "memory m", limit: "memory", in: "512m", want: 512 << 20},
		{name: "memory g", limit: "memory", in: "1g", want: 1 << 30},
		{name: "memory GiB", limit: "memory", in: "1.5GiB", want: 3 << 29},
		{name: "memory bare is MB", limit: "memory", in: "100", want: 100 << 20},
		{name: "memory unlimited", limit: "memory", in: "unlimited", want: 0},
		{name: "memory zero", limit: "memory", in: "0", want: 0},
		{name: "memory too small", limit: "memory", in: "1k", wantErr: "at least 4m"},
		{name: "memory bad unit", limit: "memory", in: "12x", wantErr: "512m"},
		{name: "memory negative", limit: "memory", in: "-1g", wantErr: "512m"},
		{name: "memory huge", limit: "memory", in: "99999999t", wantErr: "1 PiB"},
		{name: "disk", limit: "disk", in: "10g", want: 10 << 30},
		{name: "disk bytes", limit: "disk", in: "100b", wantErr: "at least 1m"},
		{name: "cpu half", limit: "cpu", in: "0.5", want: 500},
		{name: "cpu two", limit: "cpu", in: "2", want: 2000},
		{name: "cpu millis", limit: "cpu", in: "250m", want: 250},
		{name: "cpu too small", limit: "cpu", in: "0.001", wantErr: "0.01 to 1024"},
		{name: "cpu too big", limit: "cpu", in: "5000", wantErr: "0.01 to 1024"},
		{name: "cpu word", limit: "cpu", in: "half", wantErr: "0.5"},
		{name: "pids", limit: "pids", in: "100", want: 100},
		{name: "pids bad", limit: "pids", in: "1e3", wantErr: "whole number"},
		{name: "pids huge", limit: "pids", in: "9999999", wantErr: "whole number"},
		{name: "network mbit", limit: "network", in: "10mbit", want: 10_000_000},
		{name: "network kbit", limit: "network", in: "500kbit", want: 500_000},
		{name: "network bare", limit: "network", in: "100", wantErr: "10mbit"},
		{name: "network mbps", limit: "network", in: "10mbps", wantErr: "bits per second"},
		{name: "network too low", limit: "network", in: "1bit", wantErr: "8kbit"},
		{name: "unknown limit", limit: "gpu", in: "1", wantErr: "memory, cpu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLimit(tt.limit, tt.in)
			field := tt.limit
			if tt.limit == "gpu" {
				field = "limit"
			}
			checkErr(t, err, tt.wantErr, field)
			if err == nil && got != tt.want {
				t.Fatalf("ParseLimit(%q, %q) = %d, want %d", tt.limit, tt.in, got, tt.want)
			}
		})
	}
}

func TestFormatRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		parse func(string) (int64, error)
		fmt   func(int64) string
		v     int64
		want  string
	}{
		{name: "size m", parse: ParseSize, fmt: FormatSize, v: 512 << 20, want: "512m"},
		{name: "size g", parse: ParseSize, fmt: FormatSize, v: 2 << 30, want: "2g"},
		{name: "size odd", parse: ParseSize, fmt: FormatSize, v: 1000, want: "1000b"},
		{name: "cpu", parse: ParseCPU, fmt: FormatCPU, v: 1500, want: "1.5"},
		{name: "rate", parse: ParseRate, fmt: FormatRate, v: 10_000_000, want: "10mbit"},
		{name: "rate odd", parse: ParseRate, fmt: FormatRate, v: 12_345, want: "12345bit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.fmt(tt.v)
			if s != tt.want {
				t.Fatalf("format(%d) = %q, want %q", tt.v, s, tt.want)
			}
			back, err := tt.parse(s)
			if err != nil || back != tt.v {
				t.Fatalf("parse(%q) = %d, %v; want %d", s, back, err, tt.v)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int
		ok   bool
	}{
		{name: "v prefix", in: "v3", want: 3, ok: true},
		{name: "bare", in: "12", want: 12, ok: true},
		{name: "zero", in: "v0"},
		{name: "empty", in: ""},
		{name: "word", in: "latest"},
		{name: "negative", in: "-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVersion(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseVersion(%q) = %d, %v", tt.in, got, err)
			}
		})
	}
}

// FuzzParsers checks that the name, hostname and limit parsers never panic,
// that what they accept obeys the rules, and that formatting a parsed limit
// parses back to the same value. Seeds are in testdata/fuzz/FuzzParsers.
func FuzzParsers(f *testing.F) {
	for _, s := range []string{"myapp", "App.Example.COM.", "512m", "0.5", "10mbit", "1.5GiB", "*.x", "10.0.0.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateAppName(s) == nil {
			if len(s) > MaxAppNameLen || !appNameRe.MatchString(s) {
				t.Fatalf("accepted bad app name %q", s)
			}
		}
		if h, err := ValidateHostname(s); err == nil {
			if len(h) > MaxHostnameLen || h != strings.ToLower(h) {
				t.Fatalf("accepted %q as %q", s, h)
			}
			if h2, err := ValidateHostname(h); err != nil || h2 != h {
				t.Fatalf("normalized %q is not stable: %q, %v", h, h2, err)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("hostname error %v is not ErrInvalid", err)
		}
		if ValidateProcessType(s) == nil && !processTypeRe.MatchString(s) {
			t.Fatalf("accepted bad process type %q", s)
		}
		for _, p := range []struct {
			parse func(string) (int64, error)
			fmt   func(int64) string
		}{{ParseSize, FormatSize}, {ParseCPU, FormatCPU}, {ParseRate, FormatRate}, {ParsePIDs, func(v int64) string {
			if v == 0 {
				return "unlimited"
			}
			return strconv.FormatInt(v, 10)
		}}} {
			v, err := p.parse(s)
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("parse error %v is not ErrInvalid", err)
				}
				continue
			}
			if v < 0 {
				t.Fatalf("parse(%q) = %d < 0", s, v)
			}
			back, err := p.parse(p.fmt(v))
			if err != nil || back != v {
				t.Fatalf("parse(%q) = %d, formatted %q parses to %d, %v", s, v, p.fmt(v), back, err)
			}
		}
		for _, name := range []string{"memory", "cpu", "pids", "disk", "network"} {
			v, err := ParseLimit(name, s)
			if err != nil {
				continue
			}
			var l Limits
			switch name {
			case "memory":
				l.MemoryBytes = v
			case "cpu":
				l.CPUMillis = v
			case "pids":
				l.PIDs = v
			case "disk":
				l.DiskBytes = v
			case "network":
				l.NetworkBPS = v
			}
			if err := l.Validate(); err != nil {
				t.Fatalf("ParseLimit(%s, %q) = %d, which Validate refuses: %v", name, s, v, err)
			}
		}
	})
}
