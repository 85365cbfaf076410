package quota

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Bounds on the values the parsers accept. They are wide enough for any
// real host and narrow enough that a typo (an extra zero run, a unit
// mix-up) is refused instead of silently meaning "unlimited".
const (
	// MaxSize is the largest size ParseSize accepts: 1 PiB.
	MaxSize int64 = 1 << 50
	// MinRate is the smallest rate ParseRate accepts: 8 kbit/s, one
	// kilobyte a second, below which a token bucket cannot pass a full
	// Ethernet frame in a reasonable time.
	MinRate uint64 = 8_000
	// MaxRate is the largest rate ParseRate accepts: 1 tbit/s.
	MaxRate uint64 = 1_000_000_000_000
	// MaxCPU is the largest CPU count ParseCPU accepts.
	MaxCPU = 1024.0
	// MinCPU is the smallest CPU share ParseCPU accepts (1% of one CPU).
	MinCPU = 0.01
	// MaxPIDs is the largest pid limit ParsePIDs accepts, the kernel's
	// PID_MAX_LIMIT on 64-bit hosts.
	MaxPIDs int64 = 4_194_304
)

// maxInputLen bounds the text the parsers look at, so a hostile argument
// cannot make them do big-number arithmetic on megabytes of digits.
const maxInputLen = 32

// sizeUnit returns the multiplier of a size suffix. Like Docker's --memory
// (and Dokku's resource:limit, which passes it on), every unit is binary:
// 1k = 1024 bytes, 1g = 1024³ bytes, whether written k, kb or kib.
func sizeUnit(u string) (int64, bool) {
	switch u {
	case "", "b":
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

// rateUnit returns the bits per second of a rate suffix, as tc(8) spells
// them: decimal kbit/mbit/gbit/tbit and binary kibit/mibit/gibit/tibit.
func rateUnit(u string) (uint64, bool) {
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

// splitNumber splits "1.5mbit" into "1.5" and "mbit". The number part is
// plain decimal: digits with at most one dot, no sign, no exponent.
func splitNumber(s string) (num, unit string, ok bool) {
	i := 0
	dots := 0
	digits := 0
	for i < len(s) {
		c := s[i]
		if c >= '0' && c <= '9' {
			digits++
		} else if c == '.' {
			dots++
		} else {
			break
		}
		i++
	}
	if digits == 0 || dots > 1 {
		return "", "", false
	}
	return s[:i], s[i:], true
}

// scaled returns num×mult as an exact rational.
func scaled(num string, mult *big.Int) (*big.Rat, bool) {
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return nil, false
	}
	return r.Mul(r, new(big.Rat).SetInt(mult)), true
}

// ParseSize parses a size such as "512m", "1g", "1.5GiB" or "1048576"
// (bytes) into bytes. Units are binary and case-insensitive. It refuses
// negative, zero, fractional-byte and larger-than-MaxSize values, and
// unknown units, with an error wrapping ErrInvalidSize.
func ParseSize(s string) (int64, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	if in == "" {
		return 0, fmt.Errorf("parse size: empty value; write a number with a unit such as 512m or 1g: %w", ErrInvalidSize)
	}
	if len(in) > maxInputLen {
		return 0, fmt.Errorf("parse size %.32q…: too long: %w", s, ErrInvalidSize)
	}
	if in[0] == '-' {
		return 0, fmt.Errorf("parse size %q: must not be negative: %w", s, ErrInvalidSize)
	}
	num, unit, ok := splitNumber(in)
	if !ok {
		return 0, fmt.Errorf("parse size %q: not a number; write e.g. 512m or 1g: %w", s, ErrInvalidSize)
	}
	mult, ok := sizeUnit(strings.TrimSpace(unit))
	if !ok {
		return 0, fmt.Errorf("parse size %q: unknown unit %q; use b, k, m, g, t or p (binary, 1k = 1024): %w", s, unit, ErrInvalidSize)
	}
	v, ok := scaled(num, big.NewInt(mult))
	if !ok {
		return 0, fmt.Errorf("parse size %q: not a number: %w", s, ErrInvalidSize)
	}
	if !v.IsInt() {
		return 0, fmt.Errorf("parse size %q: not a whole number of bytes: %w", s, ErrInvalidSize)
	}
	n := v.Num()
	if n.Sign() <= 0 {
		return 0, fmt.Errorf("parse size %q: must be greater than zero: %w", s, ErrInvalidSize)
	}
	if n.Cmp(big.NewInt(MaxSize)) > 0 {
		return 0, fmt.Errorf("parse size %q: larger than the maximum %s: %w", s, FormatSize(MaxSize), ErrInvalidSize)
	}
	return n.Int64(), nil
}

// ParseRate parses a network rate in tc(8) units such as "10mbit",
// "1gbit" or "512kibit" into bits per second. A unit is required, and the
// byte-based tc units (bps, kbps, mbps…) are refused because "mbps" is
// read as megabits by most people and as megabytes by tc. Values outside
// [MinRate, MaxRate] are refused. Errors wrap ErrInvalidRate.
func ParseRate(s string) (uint64, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	if in == "" {
		return 0, fmt.Errorf("parse rate: empty value; write a rate such as 10mbit or 1gbit: %w", ErrInvalidRate)
	}
	if len(in) > maxInputLen {
		return 0, fmt.Errorf("parse rate %.32q…: too long: %w", s, ErrInvalidRate)
	}
	if in[0] == '-' {
		return 0, fmt.Errorf("parse rate %q: must not be negative: %w", s, ErrInvalidRate)
	}
	num, unit, ok := splitNumber(in)
	if !ok {
		return 0, fmt.Errorf("parse rate %q: not a number; write e.g. 10mbit: %w", s, ErrInvalidRate)
	}
	unit = strings.TrimSpace(unit)
	mult, ok := rateUnit(unit)
	if !ok {
		if unit == "" {
			return 0, fmt.Errorf("parse rate %q: missing unit; write e.g. %smbit (megabits per second): %w", s, num, ErrInvalidRate)
		}
		if strings.HasSuffix(unit, "bps") {
			return 0, fmt.Errorf("parse rate %q: ambiguous unit %q; write bits per second as kbit, mbit or gbit: %w", s, unit, ErrInvalidRate)
		}
		return 0, fmt.Errorf("parse rate %q: unknown unit %q; use bit, kbit, mbit, gbit, tbit (or kibit, mibit, gibit, tibit): %w", s, unit, ErrInvalidRate)
	}
	v, ok := scaled(num, new(big.Int).SetUint64(mult))
	if !ok {
		return 0, fmt.Errorf("parse rate %q: not a number: %w", s, ErrInvalidRate)
	}
	// Fractions of a bit per second are meaningless; round down.
	n := new(big.Int).Quo(v.Num(), v.Denom())
	if n.Cmp(new(big.Int).SetUint64(MinRate)) < 0 {
		return 0, fmt.Errorf("parse rate %q: below the minimum %s: %w", s, FormatRate(MinRate), ErrInvalidRate)
	}
	if n.Cmp(new(big.Int).SetUint64(MaxRate)) > 0 {
		return 0, fmt.Errorf("parse rate %q: above the maximum %s: %w", s, FormatRate(MaxRate), ErrInvalidRate)
	}
	return n.Uint64(), nil
}

// ParseCPU parses a CPU limit in CPUs, e.g. "0.5" or "2". Errors wrap
// ErrInvalidLimit.
func ParseCPU(s string) (float64, error) {
	in := strings.TrimSpace(s)
	if len(in) > maxInputLen {
		return 0, fmt.Errorf("parse cpu %.32q…: too long: %w", s, ErrInvalidLimit)
	}
	num, unit, ok := splitNumber(in)
	if !ok || unit != "" {
		return 0, fmt.Errorf("parse cpu %q: want a number of CPUs such as 0.5 or 2: %w", s, ErrInvalidLimit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) {
		return 0, fmt.Errorf("parse cpu %q: want a number of CPUs such as 0.5 or 2: %w", s, ErrInvalidLimit)
	}
	if v < MinCPU || v > MaxCPU {
		return 0, fmt.Errorf("parse cpu %q: must be between %g and %g: %w", s, MinCPU, MaxCPU, ErrInvalidLimit)
	}
	return v, nil
}

// ParsePIDs parses a process-count limit, a whole number between 1 and
// MaxPIDs. Errors wrap ErrInvalidLimit.
func ParsePIDs(s string) (int64, error) {
	in := strings.TrimSpace(s)
	if len(in) > maxInputLen {
		return 0, fmt.Errorf("parse pids %.32q…: too long: %w", s, ErrInvalidLimit)
	}
	v, err := strconv.ParseInt(in, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse pids %q: want a whole number such as 256: %w", s, ErrInvalidLimit)
	}
	if v < 1 || v > MaxPIDs {
		return 0, fmt.Errorf("parse pids %q: must be between 1 and %d: %w", s, MaxPIDs, ErrInvalidLimit)
	}
	return v, nil
}

// FormatSize renders bytes in the largest binary unit that divides it
// exactly ("512m", "1g", "1536k"), so that ParseSize(FormatSize(n)) == n.
func FormatSize(n int64) string {
	if n <= 0 {
		return strconv.FormatInt(n, 10)
	}
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"p", 1 << 50}, {"t", 1 << 40}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
		if n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// HumanSize renders bytes approximately for people ("1.5g", "37.2m").
func HumanSize(n int64) string {
	if n < 1<<10 {
		return strconv.FormatInt(n, 10) + "b"
	}
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

// FormatRate renders bits per second in the largest decimal tc unit that
// divides it exactly ("10mbit", "1500kbit"), so that
// ParseRate(FormatRate(r)) == r for rates within bounds.
func FormatRate(bits uint64) string {
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"tbit", 1_000_000_000_000}, {"gbit", 1_000_000_000}, {"mbit", 1_000_000}, {"kbit", 1_000}} {
		if bits != 0 && bits%u.mult == 0 {
			return strconv.FormatUint(bits/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatUint(bits, 10) + "bit"
}
