package quota

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Limits are the resource limits of one app process type. A zero field
// means "no limit".
type Limits struct {
	// Memory is the memory limit in bytes.
	Memory int64
	// CPU is the CPU limit in CPUs (0.5 = half of one CPU).
	CPU float64
	// PIDs is the maximum number of processes per container.
	PIDs int64
	// Disk is the app's disk limit in bytes (per app, over all its
	// containers' writable layers).
	Disk int64
	// Network is the bandwidth cap in bits per second, applied to each
	// direction of each container's veth.
	Network uint64
}

// LimitRequest is a parsed `resource:limit` command line. A nil field was
// not given and stays as it is; a field pointing at zero was given as
// "none" (or "unlimited") and removes that limit.
type LimitRequest struct {
	// App is the app name, the one positional argument.
	App string
	// ProcessType is the -p/--process-type value; empty means every
	// process type of the app.
	ProcessType string
	// Memory is --memory in bytes.
	Memory *int64
	// CPU is --cpu in CPUs.
	CPU *float64
	// PIDs is --pids.
	PIDs *int64
	// Disk is --disk in bytes.
	Disk *int64
	// Network is --network in bits per second.
	Network *uint64
}

// Empty reports whether the request sets no limit at all, in which case
// the command layer shows the current limits instead.
func (r LimitRequest) Empty() bool {
	return r.Memory == nil && r.CPU == nil && r.PIDs == nil && r.Disk == nil && r.Network == nil
}

// Apply returns l with the request's given fields applied.
func (r LimitRequest) Apply(l Limits) Limits {
	if r.Memory != nil {
		l.Memory = *r.Memory
	}
	if r.CPU != nil {
		l.CPU = *r.CPU
	}
	if r.PIDs != nil {
		l.PIDs = *r.PIDs
	}
	if r.Disk != nil {
		l.Disk = *r.Disk
	}
	if r.Network != nil {
		l.Network = *r.Network
	}
	return l
}

// LimitUsage is the usage line of resource:limit, for error messages.
const LimitUsage = "resource:limit APP [-p TYPE] [--memory 512m] [--cpu 0.5] [--pids 256] [--disk 1g] [--network 10mbit]"

// isNone reports whether v asks to remove a limit.
func isNone(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "none", "unlimited", "0":
		return true
	}
	return false
}

// ParseLimitArgs parses the arguments of `resource:limit` (everything after
// the command name). Flags may come before or after APP, as "--flag value"
// or "--flag=value". Each limit value may be "none" to remove that limit.
// Errors wrap ErrInvalidLimit, ErrInvalidSize or ErrInvalidRate and say
// which flag was wrong.
func ParseLimitArgs(args []string) (LimitRequest, error) {
	var req LimitRequest
	var positional []string
	seen := make(map[string]bool)
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			positional = append(positional, arg)
			continue
		}
		name, value, hasValue := strings.Cut(arg, "=")
		switch name {
		case "-p", "--process-type", "--memory", "--cpu", "--pids", "--disk", "--network":
		default:
			return LimitRequest{}, fmt.Errorf("parse limit: unknown flag %q; usage: %s: %w", name, LimitUsage, ErrInvalidLimit)
		}
		if !hasValue {
			if i+1 >= len(args) {
				return LimitRequest{}, fmt.Errorf("parse limit: flag %s needs a value; usage: %s: %w", name, LimitUsage, ErrInvalidLimit)
			}
			i++
			value = args[i]
		}
		key := name
		if key == "-p" {
			key = "--process-type"
		}
		if seen[key] {
			return LimitRequest{}, fmt.Errorf("parse limit: flag %s given twice: %w", name, ErrInvalidLimit)
		}
		seen[key] = true
		if err := req.set(key, value); err != nil {
			return LimitRequest{}, err
		}
	}
	if len(positional) != 1 {
		return LimitRequest{}, fmt.Errorf("parse limit: want exactly one app name, got %d; usage: %s: %w", len(positional), LimitUsage, ErrInvalidLimit)
	}
	if err := ValidateApp(positional[0]); err != nil {
		return LimitRequest{}, fmt.Errorf("parse limit: %w", err)
	}
	req.App = positional[0]
	return req, nil
}

// set stores one flag's value.
func (r *LimitRequest) set(flag, value string) error {
	if flag == "--process-type" {
		if !validName(value) {
			return fmt.Errorf("parse limit: process type %q: use lowercase letters, digits, '-' and '_': %w", value, ErrInvalidLimit)
		}
		r.ProcessType = value
		return nil
	}
	none := isNone(value)
	switch flag {
	case "--memory":
		var v int64
		if !none {
			n, err := ParseSize(value)
			if err != nil {
				return fmt.Errorf("parse limit --memory: %w", err)
			}
			v = n
		}
		r.Memory = &v
	case "--disk":
		var v int64
		if !none {
			n, err := ParseSize(value)
			if err != nil {
				return fmt.Errorf("parse limit --disk: %w", err)
			}
			if n < MinDiskLimit {
				return fmt.Errorf("parse limit --disk %q: below the minimum %s: %w", value, FormatSize(MinDiskLimit), ErrInvalidSize)
			}
			v = n
		}
		r.Disk = &v
	case "--cpu":
		var v float64
		if !none {
			n, err := ParseCPU(value)
			if err != nil {
				return fmt.Errorf("parse limit --cpu: %w", err)
			}
			v = n
		}
		r.CPU = &v
	case "--pids":
		var v int64
		if !none {
			n, err := ParsePIDs(value)
			if err != nil {
				return fmt.Errorf("parse limit --pids: %w", err)
			}
			v = n
		}
		r.PIDs = &v
	case "--network":
		var v uint64
		if !none {
			n, err := ParseRate(value)
			if err != nil {
				return fmt.Errorf("parse limit --network: %w", err)
			}
			v = n
		}
		r.Network = &v
	}
	return nil
}

// validName reports whether s is a safe app or process-type name: it is
// used as a directory, subvolume and image file name.
func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_' || c == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidateApp checks that app can name a disk quota: 1–63 characters of
// lowercase letters, digits, '-', '_' and '.', starting with a letter or
// digit. Errors wrap ErrInvalidApp.
func ValidateApp(app string) error {
	if !validName(app) {
		return fmt.Errorf("check app name %q: use 1-63 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit: %w", app, ErrInvalidApp)
	}
	return nil
}

// ProcessReport is one process type's line in resource:report.
type ProcessReport struct {
	// Type is the process type, e.g. "web".
	Type string
	// Limits are the type's configured limits.
	Limits Limits
	// Containers is how many containers of the type run.
	Containers int
	// MemoryBytes is their current memory use, summed.
	MemoryBytes int64
	// CPUPercent is their current CPU use in percent of one CPU, summed.
	CPUPercent float64
}

// Report is the data of `resource:report APP`: the app's limits and what
// it currently uses. The command layer fills memory and CPU from the
// engine's cgroups and disk from Disk.Usage.
type Report struct {
	// App is the app name.
	App string
	// DiskDriver is the disk quota mechanism in use (Disk.Driver).
	DiskDriver string
	// DiskLimit is the app's disk limit in bytes, 0 if none.
	DiskLimit int64
	// Disk is the app's current disk use.
	Disk Usage
	// Processes has one entry per process type.
	Processes []ProcessReport
}

// WriteTo writes the report as aligned text, implementing io.WriterTo.
func (r Report) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "=====> %s resource report\n", r.App)
	limit := "none"
	if r.DiskLimit > 0 {
		limit = FormatSize(r.DiskLimit)
	}
	inodes := "-"
	if r.Disk.Inodes >= 0 {
		inodes = strconv.FormatInt(r.Disk.Inodes, 10)
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Disk driver:\t%s\n", r.DiskDriver)
	fmt.Fprintf(tw, "Disk limit:\t%s\n", limit)
	fmt.Fprintf(tw, "Disk used:\t%s (%d bytes, %s inodes)\n", HumanSize(r.Disk.Bytes), r.Disk.Bytes, inodes)
	tw.Flush()
	if len(r.Processes) > 0 {
		tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TYPE\tCONTAINERS\tMEMORY\tMEMORY LIMIT\tCPU\tCPU LIMIT\tPIDS LIMIT\tNETWORK LIMIT")
		for _, p := range r.Processes {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.1f%%\t%s\t%s\t%s\n",
				p.Type, p.Containers, HumanSize(p.MemoryBytes), orNone(p.Limits.Memory > 0, FormatSize(p.Limits.Memory)),
				p.CPUPercent, orNone(p.Limits.CPU > 0, strconv.FormatFloat(p.Limits.CPU, 'g', -1, 64)),
				orNone(p.Limits.PIDs > 0, strconv.FormatInt(p.Limits.PIDs, 10)),
				orNone(p.Limits.Network > 0, FormatRate(p.Limits.Network)))
		}
		tw.Flush()
	}
	n, err := io.WriteString(w, b.String())
	if err != nil {
		return int64(n), fmt.Errorf("write report: %w", err)
	}
	return int64(n), nil
}

// orNone returns s when set, else "none".
func orNone(set bool, s string) string {
	if set {
		return s
	}
	return "none"
}
