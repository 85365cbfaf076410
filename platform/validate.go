package platform

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/berthhq/berth/internal/units"
)

// Limits on names and values. The SSH parser, the web forms and the API all
// validate through the functions below, so the rules are in one place.
const (
	// MaxAppNameLen is the longest app name (as Dokku's, so it fits a DNS label).
	MaxAppNameLen = 30
	// MaxHostnameLen is the longest hostname (RFC 1035).
	MaxHostnameLen = 253
	// MaxQuantity is the most instances of one process type.
	MaxQuantity = 100
	// MaxConfigValueLen is the longest config var value, in bytes.
	MaxConfigValueLen = 64 << 10
	// MaxConfigTotal is the most an app's config vars may hold in all,
	// names and values, in bytes: they become every instance's environment,
	// which the engine caps at 512 KiB with PORT, DYNO and the image's own.
	MaxConfigTotal = 256 << 10
	// AppUIDRange is the size of each app's host UID range.
	AppUIDRange = 65536

	// MinMemory is the smallest memory limit.
	MinMemory = 4 << 20
	// MinDisk is the smallest disk limit.
	MinDisk = 1 << 20
	// MaxSize is the largest memory or disk limit (1 PiB).
	MaxSize = units.MaxSize
	// MinCPUMillis and MaxCPUMillis bound the CPU limit (0.01 to 1024 CPUs).
	MinCPUMillis, MaxCPUMillis = 10, 1024 * 1000
	// MaxPIDs is the largest pids limit (the kernel's pid_max ceiling).
	MaxPIDs = 4194304
	// MinRate and MaxRate bound the network limit in bits per second.
	MinRate, MaxRate = units.MinRate, units.MaxRate
)

var (
	appNameRe     = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	processTypeRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,29}$`)
	configKeyRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	userNameRe    = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)
	keyNameRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)
	branchRe      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$`)
	labelRe       = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// reservedAppNames are refused because they collide with berth's own names,
// hostnames or routes.
var reservedAppNames = map[string]bool{
	"berth": true, "admin": true, "api": true, "app": true, "apps": true,
	"dashboard": true, "default": true, "git": true, "localhost": true,
	"login": true, "logout": true, "new": true, "root": true, "ssh": true,
	"static": true, "system": true, "www": true,
}

// shown returns s cut to a length that is safe to quote in a message.
func shown(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// ValidateAppName checks an app name: lowercase letters, digits and dashes,
// starting with a letter, not ending with a dash, at most 30 characters, and
// not one of berth's reserved names.
func ValidateAppName(name string) error {
	switch {
	case name == "":
		return invalid("app name", "", "give a name: lowercase letters, digits and dashes, starting with a letter")
	case len(name) > MaxAppNameLen:
		return invalid("app name", shown(name), "use at most 30 characters")
	case !appNameRe.MatchString(name):
		return invalid("app name", shown(name), "use lowercase letters, digits and dashes, starting with a letter")
	case strings.HasSuffix(name, "-"):
		return invalid("app name", name, "do not end with a dash")
	case reservedAppNames[name]:
		return invalid("app name", name, "this name is reserved by berth: choose another")
	}
	return nil
}

// ValidateHostname checks a domain for an app and returns it normalized:
// lower-cased, without a trailing dot. It must be a DNS name of labels made
// of letters, digits and dashes; IP addresses and wildcards are refused.
func ValidateHostname(host string) (string, error) {
	h := normalizeHost(host)
	switch {
	case h == "":
		return "", invalid("hostname", "", "give a hostname such as app.example.com")
	case len(h) > MaxHostnameLen:
		return "", invalid("hostname", shown(host), "use at most 253 characters")
	case !utf8.ValidString(h) || strings.IndexFunc(h, func(r rune) bool { return r > 127 }) >= 0:
		return "", invalid("hostname", shown(host), "use the ASCII (punycode, xn--) form of an internationalized name")
	case strings.Contains(h, "*"):
		return "", invalid("hostname", shown(host), "wildcard domains are not supported: add each hostname")
	case strings.ContainsAny(h, ":/ @"):
		return "", invalid("hostname", shown(host), "give only the hostname, without scheme, port, path or user")
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return "", invalid("hostname", shown(host), "IP addresses cannot be app domains: use a DNS name")
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" {
			return "", invalid("hostname", shown(host), "empty label (two dots in a row or a leading dot)")
		}
		if len(l) > 63 {
			return "", invalid("hostname", shown(host), "each dot-separated label may have at most 63 characters")
		}
		if !labelRe.MatchString(l) {
			return "", invalid("hostname", shown(host), "labels use letters, digits and dashes, and do not start or end with a dash")
		}
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return "", invalid("hostname", shown(host), "the last label cannot be all digits")
	}
	return h, nil
}

// normalizeHost lower-cases a hostname and drops surrounding space and a
// trailing dot.
func normalizeHost(host string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(host), "."))
}

// ValidateCustomDomain checks a custom domain for an app as ValidateHostname
// does and returns it normalized. It also refuses globalDomain itself and
// every name under it: APP.<globalDomain> is each app's default hostname,
// and a name such as x.APP.<globalDomain> lives under another app's, so
// letting one app claim them would hand it another tenant's traffic and
// certificates. An empty globalDomain skips that check.
func ValidateCustomDomain(host, globalDomain string) (string, error) {
	h, err := ValidateHostname(host)
	if err != nil {
		return "", err
	}
	d := normalizeHost(globalDomain)
	switch {
	case d == "":
	case h == d:
		return "", invalid("hostname", h, fmt.Sprintf("it is berth's global domain %s, not an app's: every app answers at APP.%s already; add a domain of your own", d, d))
	case strings.HasSuffix(h, "."+d):
		return "", invalid("hostname", h, fmt.Sprintf("names under berth's global domain %s are berth's: every app answers at APP.%s already (no domains:add needed); add a domain of your own", d, d))
	}
	return h, nil
}

// ValidateProcessType checks a process type name as found in a Procfile:
// lowercase letters, digits, dashes and underscores, starting with a letter,
// at most 30 characters.
func ValidateProcessType(t string) error {
	if t == "" {
		return invalid("process type", "", "give a process type such as web or worker")
	}
	if !processTypeRe.MatchString(t) {
		return invalid("process type", shown(t), "use lowercase letters, digits, dashes and underscores, starting with a letter (at most 30)")
	}
	return nil
}

// ValidateConfigKey checks a config var name: letters, digits and
// underscores, not starting with a digit, as a shell variable.
func ValidateConfigKey(key string) error {
	switch {
	case key == "":
		return invalid("config var name", "", "give a name such as DATABASE_URL")
	case len(key) > 200:
		return invalid("config var name", shown(key), "use at most 200 characters")
	case !configKeyRe.MatchString(key):
		return invalid("config var name", shown(key), "use letters, digits and underscores, not starting with a digit")
	}
	return nil
}

// validateConfigValue checks a config var's value without ever quoting it.
func validateConfigValue(key, value string) error {
	switch {
	case len(value) > MaxConfigValueLen:
		return invalid("value of "+key, "", "values may have at most 64 KiB")
	case strings.IndexByte(value, 0) >= 0:
		return invalid("value of "+key, "", "values cannot contain NUL bytes")
	case !utf8.ValidString(value):
		return invalid("value of "+key, "", "values must be valid UTF-8")
	}
	return nil
}

// ValidateUserName checks a user name: lowercase letters, digits, dots,
// dashes and underscores, starting with a letter, at most 32 characters.
func ValidateUserName(name string) error {
	if name == "" {
		return invalid("user name", "", "give a name such as alice")
	}
	if !userNameRe.MatchString(name) {
		return invalid("user name", shown(name), "use lowercase letters, digits, dots, dashes and underscores, starting with a letter (at most 32)")
	}
	return nil
}

// ValidateKeyName checks the name of an SSH key.
func ValidateKeyName(name string) error {
	if !keyNameRe.MatchString(name) {
		return invalid("key name", shown(name), "use letters, digits and . _ @ + -, at most 64 characters")
	}
	return nil
}

// ValidateBranch checks a deploy branch name.
func ValidateBranch(branch string) error {
	if !branchRe.MatchString(branch) || strings.Contains(branch, "..") || strings.HasSuffix(branch, "/") ||
		strings.HasSuffix(branch, ".lock") {
		return invalid("branch", shown(branch), "give a git branch name such as main")
	}
	return nil
}

// ValidateQuantity checks an instance count.
func ValidateQuantity(processType string, n int) error {
	if n < 0 || n > MaxQuantity {
		return invalid("quantity of "+processType, strconv.Itoa(n), "use 0 to 100")
	}
	return nil
}

// ParseQuantity parses an instance count such as "3".
func ParseQuantity(processType, s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, invalid("quantity of "+processType, shown(s), "give a whole number from 0 to 100")
	}
	if err := ValidateQuantity(processType, n); err != nil {
		return 0, err
	}
	return n, nil
}

// isUnlimited reports the spellings that clear a limit.
func isUnlimited(s string) bool {
	switch s {
	case "0", "none", "unlimited", "off":
		return true
	}
	return false
}

// ParseSize parses a memory or disk size: "512m", "1g", "1.5GiB", "64k",
// "100b". Units are binary (k = 1024); a bare number means megabytes, as in
// Dokku's resource:limit. "0", "none" and "unlimited" give 0 (no limit).
func ParseSize(s string) (int64, error) {
	return parseSize("size", s)
}

func parseSize(field, s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if isUnlimited(t) {
		return 0, nil
	}
	b, err := units.ParseSize(t, units.MiB)
	if err != nil {
		return 0, invalid(field, shown(s), err.Error())
	}
	return b, nil
}

// FormatSize prints a byte count the way ParseSize reads it, in the largest
// unit that divides it exactly: 536870912 is "512m"; 0 is "unlimited".
func FormatSize(b int64) string {
	if b == 0 {
		return "unlimited"
	}
	return units.FormatSize(b)
}

// ParseCPU parses a CPU limit in CPUs ("0.5", "2") or millicpus ("500m")
// and returns millicpus. "0", "none" and "unlimited" give 0 (no limit).
func ParseCPU(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if isUnlimited(t) {
		return 0, nil
	}
	v, unit, ok := units.SplitNumber(t)
	var m float64
	switch {
	case ok && unit == "":
		m = v * 1000
	case ok && unit == "m":
		m = v
	default:
		return 0, invalid("cpu", shown(s), "give CPUs such as 0.5 or 2, or millicpus such as 500m")
	}
	if m < MinCPUMillis || m > MaxCPUMillis {
		return 0, invalid("cpu", shown(s), "use 0.01 to 1024 CPUs")
	}
	return int64(math.Round(m)), nil
}

// FormatCPU prints millicpus as CPUs: 500 is "0.5".
func FormatCPU(m int64) string {
	if m == 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(float64(m)/1000, 'f', -1, 64)
}

// ParseRate parses a network rate in bits per second with tc's units:
// "10mbit", "500kbit", "1gbit" (decimal: k = 1000). A unit is required,
// because tc's "mbps" means megabytes. "0", "none" and "unlimited" give 0.
func ParseRate(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if isUnlimited(t) {
		return 0, nil
	}
	r, err := units.ParseRate(t)
	if err != nil {
		return 0, invalid("network", shown(s), err.Error())
	}
	return r, nil
}

// FormatRate prints bits per second the way ParseRate reads it; 0 is
// "unlimited".
func FormatRate(bps int64) string {
	if bps == 0 {
		return "unlimited"
	}
	return units.FormatRate(bps)
}

// ParsePIDs parses a process-count limit. "0", "none" and "unlimited" give 0.
func ParsePIDs(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if isUnlimited(t) {
		return 0, nil
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 1 || n > MaxPIDs {
		return 0, invalid("pids", shown(s), "give a whole number from 1 to 4194304")
	}
	return n, nil
}

// ParseLimit parses the value of one resource limit by its name: memory,
// cpu, pids, disk or network (the names of Dokku's resource:limit flags).
func ParseLimit(name, value string) (int64, error) {
	switch name {
	case "memory":
		b, err := parseSize("memory", value)
		if err == nil && b != 0 && b < MinMemory {
			err = invalid("memory", shown(value), "use at least 4m")
		}
		return b, err
	case "disk":
		b, err := parseSize("disk", value)
		if err == nil && b != 0 && b < MinDisk {
			err = invalid("disk", shown(value), "use at least 1m")
		}
		return b, err
	case "cpu":
		return ParseCPU(value)
	case "pids":
		return ParsePIDs(value)
	case "network":
		return ParseRate(value)
	}
	return 0, invalid("limit", shown(name), "use memory, cpu, pids, disk or network")
}

// Validate checks that every limit is 0 (none) or within its range.
func (l Limits) Validate() error {
	check := func(field string, v, lo, hi int64, show func(int64) string, hint string) error {
		if v != 0 && (v < lo || v > hi) {
			return invalid(field, show(v), hint)
		}
		return nil
	}
	num := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, err := range []error{
		check("memory", l.MemoryBytes, MinMemory, MaxSize, FormatSize, "use 4m to 1 PiB, or 0 for none"),
		check("cpu", l.CPUMillis, MinCPUMillis, MaxCPUMillis, FormatCPU, "use 0.01 to 1024 CPUs, or 0 for none"),
		check("pids", l.PIDs, 1, MaxPIDs, num, "use 1 to 4194304, or 0 for none"),
		check("disk", l.DiskBytes, MinDisk, MaxSize, FormatSize, "use 1m to 1 PiB, or 0 for none"),
		check("network", l.NetworkBPS, MinRate, MaxRate, FormatRate, "use 8kbit to 1tbit, or 0 for none"),
	} {
		if err != nil {
			return err
		}
	}
	if l.MemoryBytes < 0 || l.CPUMillis < 0 || l.PIDs < 0 || l.DiskBytes < 0 || l.NetworkBPS < 0 {
		return invalid("limits", "", "limits cannot be negative")
	}
	return nil
}
