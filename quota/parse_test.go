package quota

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64
		err  string
	}{
		{name: "megabytes", in: "512m", want: 512 << 20},
		{name: "gigabytes", in: "1g", want: 1 << 30},
		{name: "upper case long unit", in: "2GiB", want: 2 << 30},
		{name: "gb is binary", in: "1GB", want: 1 << 30},
		{name: "fraction", in: "1.5g", want: 3 << 29},
		{name: "kilobytes", in: "100k", want: 100 << 10},
		{name: "bare bytes", in: "1048576", want: 1 << 20},
		{name: "bytes unit", in: "4096b", want: 4096},
		{name: "spaces around", in: " 64m ", want: 64 << 20},
		{name: "space before unit", in: "64 m", want: 64 << 20},
		{name: "max", in: "1p", want: MaxSize},
		{name: "negative", in: "-1g", err: "negative"},
		{name: "zero", in: "0", err: "greater than zero"},
		{name: "zero with unit", in: "0m", err: "greater than zero"},
		{name: "unknown unit", in: "5x", err: "unknown unit"},
		{name: "bits are not bytes", in: "10mbit", err: "unknown unit"},
		{name: "absurdly large", in: "2p", err: "larger than the maximum"},
		{name: "overflowing", in: "99999999999999999999g", err: "larger than the maximum"},
		{name: "fractional byte", in: "1.5", err: "whole number"},
		{name: "empty", in: "", err: "empty"},
		{name: "no number", in: "g", err: "not a number"},
		{name: "two dots", in: "1.2.3m", err: "not a number"},
		{name: "exponent", in: "1e9", err: "unknown unit"},
		{name: "hex", in: "0x10", err: "unknown unit"},
		{name: "too long", in: strings.Repeat("1", 40), err: "too long"},
		{name: "nan", in: "NaN", err: "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if tt.err != "" {
				if err == nil {
					t.Fatalf("ParseSize(%q) = %d, want error containing %q", tt.in, got, tt.err)
				}
				if !errors.Is(err, ErrInvalidSize) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseSize(%q) error = %v, want ErrInvalidSize containing %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint64
		err  string
	}{
		{name: "megabits", in: "10mbit", want: 10_000_000},
		{name: "gigabit", in: "1gbit", want: 1_000_000_000},
		{name: "upper case", in: "100Mbit", want: 100_000_000},
		{name: "binary kilobits", in: "512kibit", want: 512 * 1024},
		{name: "fraction", in: "1.5mbit", want: 1_500_000},
		{name: "minimum", in: "8kbit", want: MinRate},
		{name: "maximum", in: "1tbit", want: MaxRate},
		{name: "bits", in: "64000bit", want: 64000},
		{name: "negative", in: "-10mbit", err: "negative"},
		{name: "missing unit", in: "10", err: "missing unit"},
		{name: "mbps is ambiguous", in: "10mbps", err: "ambiguous"},
		{name: "unknown unit", in: "10mbyte", err: "unknown unit"},
		{name: "size unit", in: "10m", err: "unknown unit"},
		{name: "too small", in: "1kbit", err: "below the minimum"},
		{name: "zero", in: "0mbit", err: "below the minimum"},
		{name: "absurdly large", in: "2tbit", err: "above the maximum"},
		{name: "overflowing", in: "99999999999999999999tbit", err: "above the maximum"},
		{name: "empty", in: " ", err: "empty"},
		{name: "garbage", in: "fast", err: "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if tt.err != "" {
				if err == nil {
					t.Fatalf("ParseRate(%q) = %d, want error containing %q", tt.in, got, tt.err)
				}
				if !errors.Is(err, ErrInvalidRate) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseRate(%q) error = %v, want ErrInvalidRate containing %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRate(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseCPUAndPIDs(t *testing.T) {
	cpus := []struct {
		name string
		in   string
		want float64
		ok   bool
	}{
		{name: "half", in: "0.5", want: 0.5, ok: true},
		{name: "two", in: "2", want: 2, ok: true},
		{name: "zero", in: "0"},
		{name: "negative", in: "-1"},
		{name: "too many", in: "5000"},
		{name: "unit", in: "500m"},
		{name: "nan", in: "NaN"},
		{name: "inf", in: "Inf"},
	}
	for _, tt := range cpus {
		t.Run("cpu "+tt.name, func(t *testing.T) {
			got, err := ParseCPU(tt.in)
			if tt.ok != (err == nil) || (tt.ok && got != tt.want) {
				t.Fatalf("ParseCPU(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidLimit) {
				t.Fatalf("ParseCPU(%q) error %v does not wrap ErrInvalidLimit", tt.in, err)
			}
		})
	}
	pids := []struct {
		name string
		in   string
		want int64
		ok   bool
	}{
		{name: "typical", in: "256", want: 256, ok: true},
		{name: "zero", in: "0"},
		{name: "negative", in: "-5"},
		{name: "above pid max", in: "99999999"},
		{name: "fraction", in: "1.5"},
	}
	for _, tt := range pids {
		t.Run("pids "+tt.name, func(t *testing.T) {
			got, err := ParsePIDs(tt.in)
			if tt.ok != (err == nil) || (tt.ok && got != tt.want) {
				t.Fatalf("ParsePIDs(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestParseLimitArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want Limits
		typ  string
		err  string
	}{
		{
			name: "everything",
			args: []string{"myapp", "-p", "web", "--memory", "512m", "--cpu", "0.5", "--pids", "256", "--disk", "1g", "--network", "10mbit"},
			want: Limits{Memory: 512 << 20, CPU: 0.5, PIDs: 256, Disk: 1 << 30, Network: 10_000_000},
			typ:  "web",
		},
		{
			name: "flags first with equals",
			args: []string{"--disk=2g", "--process-type=worker", "myapp"},
			want: Limits{Disk: 2 << 30},
			typ:  "worker",
		},
		{name: "none removes", args: []string{"myapp", "--memory", "none"}, want: Limits{}},
		{name: "no app", args: []string{"--memory", "1g"}, err: "exactly one app"},
		{name: "two apps", args: []string{"a", "b"}, err: "exactly one app"},
		{name: "unknown flag", args: []string{"myapp", "--swap", "1g"}, err: "unknown flag"},
		{name: "missing value", args: []string{"myapp", "--disk"}, err: "needs a value"},
		{name: "bad size", args: []string{"myapp", "--memory", "-1g"}, err: "--memory"},
		{name: "bad rate", args: []string{"myapp", "--network", "10mbps"}, err: "ambiguous"},
		{name: "disk too small", args: []string{"myapp", "--disk", "1m"}, err: "below the minimum"},
		{name: "repeated flag", args: []string{"myapp", "--cpu", "1", "--cpu", "2"}, err: "twice"},
		{name: "bad app", args: []string{"../etc"}, err: "app name"},
		{name: "bad type", args: []string{"myapp", "-p", "WEB!"}, err: "process type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := ParseLimitArgs(tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseLimitArgs(%q) error = %v, want one containing %q", tt.args, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLimitArgs(%q): %v", tt.args, err)
			}
			if req.App != "myapp" || req.ProcessType != tt.typ {
				t.Fatalf("app, type = %q, %q; want myapp, %q", req.App, req.ProcessType, tt.typ)
			}
			old := Limits{Memory: 1, CPU: 1, PIDs: 1, Disk: 1, Network: 1}
			got := req.Apply(old)
			want := tt.want
			// Fields the command line did not mention keep their old value.
			if req.Memory == nil {
				want.Memory = old.Memory
			}
			if req.CPU == nil {
				want.CPU = old.CPU
			}
			if req.PIDs == nil {
				want.PIDs = old.PIDs
			}
			if req.Disk == nil {
				want.Disk = old.Disk
			}
			if req.Network == nil {
				want.Network = old.Network
			}
			if got != want {
				t.Fatalf("Apply = %+v, want %+v", got, want)
			}
		})
	}
}

func TestFormatRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		size int64
		text string
	}{
		{name: "gigabyte", size: 1 << 30, text: "1g"},
		{name: "odd kilobytes", size: 1536 << 10, text: "1536k"},
		{name: "bytes", size: 1000, text: "1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatSize(tt.size); got != tt.text {
				t.Fatalf("FormatSize(%d) = %q, want %q", tt.size, got, tt.text)
			}
			if back, err := ParseSize(tt.text); err != nil || back != tt.size {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tt.text, back, err, tt.size)
			}
		})
	}
	if got := FormatRate(10_000_000); got != "10mbit" {
		t.Fatalf("FormatRate(10e6) = %q", got)
	}
}

func TestReportWriteTo(t *testing.T) {
	r := Report{
		App:        "myapp",
		DiskDriver: DriverBtrfs,
		DiskLimit:  1 << 30,
		Disk:       Usage{Bytes: 3 << 20, Inodes: 12},
		Processes: []ProcessReport{{
			Type: "web", Containers: 2, MemoryBytes: 100 << 20, CPUPercent: 12.5,
			Limits: Limits{Memory: 512 << 20, CPU: 0.5, Network: 10_000_000},
		}},
	}
	var b strings.Builder
	if _, err := r.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"myapp", "btrfs", "Disk limit:   1g", "3.0m", "12 inodes", "web", "512m", "10mbit", "12.5%"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// FuzzParseSize checks that ParseSize never panics, only returns values in
// range, refuses with ErrInvalidSize, and agrees with FormatSize.
// Seeds are in testdata/fuzz/FuzzParseSize.
func FuzzParseSize(f *testing.F) {
	f.Add("512m")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidSize) {
				t.Fatalf("ParseSize(%q) error %v does not wrap ErrInvalidSize", s, err)
			}
			return
		}
		if n <= 0 || n > MaxSize {
			t.Fatalf("ParseSize(%q) = %d, out of range", s, n)
		}
		back, err := ParseSize(FormatSize(n))
		if err != nil || back != n {
			t.Fatalf("ParseSize(FormatSize(%d)=%q) = %d, %v", n, FormatSize(n), back, err)
		}
		if up, err := ParseSize(strings.ToUpper(s)); err != nil || up != n {
			t.Fatalf("ParseSize is case-sensitive for %q: %d, %v", s, up, err)
		}
	})
}

// FuzzParseRate checks that ParseRate never panics, only returns values in
// range, refuses with ErrInvalidRate, and agrees with FormatRate.
// Seeds are in testdata/fuzz/FuzzParseRate.
func FuzzParseRate(f *testing.F) {
	f.Add("10mbit")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseRate(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidRate) {
				t.Fatalf("ParseRate(%q) error %v does not wrap ErrInvalidRate", s, err)
			}
			return
		}
		if n < MinRate || n > MaxRate {
			t.Fatalf("ParseRate(%q) = %d, out of range", s, n)
		}
		back, err := ParseRate(FormatRate(n))
		if err != nil || back != n {
			t.Fatalf("ParseRate(FormatRate(%d)=%q) = %d, %v", n, FormatRate(n), back, err)
		}
	})
}

// FuzzParseLimitArgs checks that the resource:limit parser never panics
// and that whatever it accepts is within the parsers' bounds.
func FuzzParseLimitArgs(f *testing.F) {
	f.Add("myapp --memory 512m --disk 1g --network 10mbit")
	f.Fuzz(func(t *testing.T, line string) {
		req, err := ParseLimitArgs(strings.Fields(line))
		if err != nil {
			return
		}
		if ValidateApp(req.App) != nil {
			t.Fatalf("accepted bad app %q", req.App)
		}
		if req.Disk != nil && *req.Disk != 0 && (*req.Disk < MinDiskLimit || *req.Disk > MaxSize) {
			t.Fatalf("accepted disk %d", *req.Disk)
		}
		if req.Network != nil && checkRate(*req.Network) != nil {
			t.Fatalf("accepted rate %d", *req.Network)
		}
	})
}
