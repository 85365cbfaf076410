// Package units reads and writes the sizes and rates of resource limits, so
// that the command layer (platform) and the quota drivers spell them alike.
//
// Sizes are binary, as in Docker's --memory and Dokku's resource:limit:
// 1k = 1024 bytes whether written k, kb or kib. Rates are tc(8)'s bit
// units: decimal kbit/mbit/gbit/tbit and binary kibit/mibit/gibit/tibit.
// The byte-based tc units (kbps, mbps…) are refused, because most people
// read "mbps" as megabits and tc reads it as megabytes.
package units

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// Bounds wide enough for any real host and narrow enough that a typo (a
// run of extra zeros, a unit mix-up) is refused instead of meaning
// "unlimited".
const (
	// MaxSize is the largest size: 1 PiB.
	MaxSize int64 = 1 << 50
	// MinRate is the smallest rate: 8 kbit/s, one kilobyte a second, below
	// which a token bucket cannot pass a full Ethernet frame in good time.
	MinRate int64 = 8_000
	// MaxRate is the largest rate: 1 tbit/s.
	MaxRate int64 = 1_000_000_000_000
)

// MiB is a megabyte, the unit of a bare number in Dokku's resource:limit.
const MiB int64 = 1 << 20

// maxInput bounds the text the parsers look at.
const maxInput = 32

// sizeUnit returns the multiplier of a size suffix.
func sizeUnit(u string) (int64, bool) {
	switch u {
	case "b":
		return 1, true
	case "k", "kb", "kib":
		return 1 << 10, true
	case "m", "mb", "mib":
		return 1 << 20, true
	case "g", "gb", "gib":
		return 1 << 30, true
	case "t", "tb", "tib":
		return 1 << 40, true
	case "p", "pb", "pib":
		return 1 << 50, true
	}
	return 0, false
}

// rateUnit returns the bits per second of a rate suffix.
func rateUnit(u string) (int64, bool) {
	switch u {
	case "bit":
		return 1, true
	case "kbit":
		return 1_000, true
	case "mbit":
		return 1_000_000, true
	case "gbit":
		return 1_000_000_000, true
	case "tbit":
		return 1_000_000_000_000, true
	case "kibit":
		return 1 << 10, true
	case "mibit":
		return 1 << 20, true
	case "gibit":
		return 1 << 30, true
	case "tibit":
		return 1 << 40, true
	}
	return 0, false
}

// SplitNumber splits "1.5mbit" into 1.5 and "mbit" (the unit trimmed of
// spaces). The number is plain decimal: digits with at most one dot, no
// sign, no exponent.
func SplitNumber(s string) (float64, string, bool) {
	i, digits, dots := 0, 0, 0
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			goto done
		}
	}
done:
	if digits == 0 || dots > 1 {
		return 0, "", false
	}
	v, err := strconv.ParseFloat(s[:i], 64)
	if err != nil || math.IsInf(v, 0) {
		return 0, "", false
	}
	return v, strings.TrimSpace(s[i:]), true
}

// ParseSize parses a size such as "512m", "1g", "1.5GiB" or "100b" into
// bytes, rounded to the nearest byte; a bare number counts in units of
// bare bytes (MiB for Dokku's megabytes). It refuses negative values,
// unknown units and sizes above MaxSize; the error is the reason, meant to
// follow the value in a message.
func ParseSize(s string, bare int64) (int64, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	if len(in) > maxInput {
		return 0, errors.New("too long")
	}
	v, unit, ok := SplitNumber(in)
	if !ok {
		return 0, errors.New("give a size such as 512m or 1g (units b, k, m, g, t, p; 1k = 1024)")
	}
	mult := bare
	if unit != "" {
		if mult, ok = sizeUnit(unit); !ok {
			return 0, errors.New("unknown unit " + strconv.Quote(unit) + "; give a size such as 512m or 1g (units b, k, m, g, t, p; 1k = 1024)")
		}
	}
	b := math.Round(v * float64(mult))
	if b > float64(MaxSize) {
		return 0, errors.New("at most 1 PiB")
	}
	return int64(b), nil
}

// ParseRate parses a rate such as "10mbit" or "512kibit" into bits per
// second, rounded down. A unit is required. It refuses rates outside
// [MinRate, MaxRate]; the error is the reason, meant to follow the value.
func ParseRate(s string) (int64, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	if len(in) > maxInput {
		return 0, errors.New("too long")
	}
	v, unit, ok := SplitNumber(in)
	if !ok {
		return 0, errors.New("give a rate such as 10mbit (units bit, kbit, mbit, gbit, tbit)")
	}
	mult, known := rateUnit(unit)
	switch {
	case known:
	case unit == "":
		return 0, errors.New("give a unit: bits per second as kbit, mbit or gbit (10mbit)")
	case strings.HasSuffix(unit, "bps"):
		return 0, errors.New("write bits per second as kbit, mbit or gbit (10mbit); tc reads " + strconv.Quote(unit) + " as bytes")
	default:
		return 0, errors.New("unknown unit " + strconv.Quote(unit) + "; give a rate such as 10mbit (units bit, kbit, mbit, gbit, tbit)")
	}
	r := math.Floor(v * float64(mult))
	if r < float64(MinRate) || r > float64(MaxRate) {
		return 0, errors.New("use 8kbit to 1tbit")
	}
	return int64(r), nil
}

// FormatSize prints bytes in the largest binary unit that divides them
// exactly ("512m", "1536k", "1000b"), so that ParseSize reads it back.
func FormatSize(n int64) string {
	if n > 0 {
		for _, u := range []struct {
			suffix string
			mult   int64
		}{{"p", 1 << 50}, {"t", 1 << 40}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
			if n%u.mult == 0 {
				return strconv.FormatInt(n/u.mult, 10) + u.suffix
			}
		}
	}
	return strconv.FormatInt(n, 10) + "b"
}

// HumanSize prints bytes approximately, for people ("1.5g", "37.2m").
func HumanSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"p", 1 << 50}, {"t", 1 << 40}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
		if float64(n) >= u.mult {
			return strconv.FormatFloat(float64(n)/u.mult, 'f', 1, 64) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "b"
}

// FormatRate prints bits per second in the largest decimal unit that
// divides them exactly ("10mbit", "1500kbit"), so that ParseRate reads it
// back.
func FormatRate(bps int64) string {
	if bps > 0 {
		for _, u := range []struct {
			suffix string
			mult   int64
		}{{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}} {
			if bps%u.mult == 0 {
				return strconv.FormatInt(bps/u.mult, 10) + u.suffix
			}
		}
	}
	return strconv.FormatInt(bps, 10) + "bit"
}
