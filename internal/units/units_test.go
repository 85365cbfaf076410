package units

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		bare int64
		want int64
		err  string
	}{
		{name: "megabytes", in: "512m", bare: 1, want: 512 << 20},
		{name: "gigabytes", in: "1g", bare: 1, want: 1 << 30},
		{name: "upper case long unit", in: "2GiB", bare: 1, want: 2 << 30},
		{name: "gb is binary", in: "1GB", bare: 1, want: 1 << 30},
		{name: "fraction", in: "1.5g", bare: 1, want: 3 << 29},
		{name: "bare bytes", in: "1048576", bare: 1, want: 1 << 20},
		{name: "bare megabytes", in: "100", bare: MiB, want: 100 << 20},
		{name: "bytes unit", in: "4096b", bare: MiB, want: 4096},
		{name: "space before unit", in: " 64 m ", bare: 1, want: 64 << 20},
		{name: "zero", in: "0", bare: MiB, want: 0},
		{name: "max", in: "1p", bare: 1, want: MaxSize},
		{name: "negative", in: "-1g", bare: 1, err: "512m"},
		{name: "unknown unit", in: "5x", bare: 1, err: "unknown unit"},
		{name: "bits are not bytes", in: "10mbit", bare: 1, err: "unknown unit"},
		{name: "absurdly large", in: "2p", bare: 1, err: "1 PiB"},
		{name: "overflowing", in: "99999999999999999999g", bare: 1, err: "1 PiB"},
		{name: "no number", in: "g", bare: 1, err: "512m"},
		{name: "two dots", in: "1.2.3m", bare: 1, err: "512m"},
		{name: "exponent", in: "1e9", bare: 1, err: "unknown unit"},
		{name: "too long", in: strings.Repeat("1", 40), bare: 1, err: "too long"},
		{name: "nan", in: "NaN", bare: 1, err: "512m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSize(tt.in, tt.bare)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseSize(%q) = %d, %v; want an error containing %q", tt.in, got, err, tt.err)
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
		want int64
		err  string
	}{
		{name: "megabits", in: "10mbit", want: 10_000_000},
		{name: "upper case", in: "100Mbit", want: 100_000_000},
		{name: "binary kilobits", in: "512kibit", want: 512 * 1024},
		{name: "fraction", in: "1.5mbit", want: 1_500_000},
		{name: "minimum", in: "8kbit", want: MinRate},
		{name: "maximum", in: "1tbit", want: MaxRate},
		{name: "negative", in: "-10mbit", err: "10mbit"},
		{name: "missing unit", in: "10", err: "give a unit"},
		{name: "mbps is ambiguous", in: "10mbps", err: "bits per second"},
		{name: "unknown unit", in: "10mbyte", err: "unknown unit"},
		{name: "size unit", in: "10m", err: "unknown unit"},
		{name: "too small", in: "1kbit", err: "8kbit to 1tbit"},
		{name: "absurdly large", in: "2tbit", err: "8kbit to 1tbit"},
		{name: "overflowing", in: "99999999999999999999tbit", err: "8kbit to 1tbit"},
		{name: "garbage", in: "fast", err: "10mbit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseRate(%q) = %d, %v; want an error containing %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRate(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{FormatSize(1 << 30), "1g"},
		{FormatSize(1536 << 10), "1536k"},
		{FormatSize(1000), "1000b"},
		{FormatSize(0), "0b"},
		{HumanSize(3 << 20), "3.0m"},
		{HumanSize(1536 << 20), "1.5g"},
		{HumanSize(12), "12b"},
		{FormatRate(10_000_000), "10mbit"},
		{FormatRate(1_500_000), "1500kbit"},
		{FormatRate(12_345), "12345bit"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// FuzzUnits checks that the parsers never panic, return only values in
// range, ignore case, and read back what the formatters print.
func FuzzUnits(f *testing.F) {
	for _, s := range []string{"512m", "1.5GiB", "100", "10mbit", "512kibit", "1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, bare := range []int64{1, MiB} {
			n, err := ParseSize(s, bare)
			if err != nil {
				continue
			}
			if n < 0 || n > MaxSize {
				t.Fatalf("ParseSize(%q) = %d, out of range", s, n)
			}
			if back, err := ParseSize(FormatSize(n), bare); err != nil || back != n {
				t.Fatalf("ParseSize(FormatSize(%d)=%q) = %d, %v", n, FormatSize(n), back, err)
			}
			if up, err := ParseSize(strings.ToUpper(s), bare); err != nil || up != n {
				t.Fatalf("ParseSize is case-sensitive for %q: %d, %v", s, up, err)
			}
		}
		if r, err := ParseRate(s); err == nil {
			if r < MinRate || r > MaxRate {
				t.Fatalf("ParseRate(%q) = %d, out of range", s, r)
			}
			if back, err := ParseRate(FormatRate(r)); err != nil || back != r {
				t.Fatalf("ParseRate(FormatRate(%d)=%q) = %d, %v", r, FormatRate(r), back, err)
			}
		}
	})
}
