package quota

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/berthhq/berth/internal/units"
)

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

// Report is the disk part of `resource:report APP`: the app's disk limit
// and what it uses (Disk.Usage).
type Report struct {
	// App is the app name.
	App string
	// DiskDriver is the disk quota mechanism in use (Disk.Driver).
	DiskDriver string
	// DiskLimit is the app's disk limit in bytes, 0 if none.
	DiskLimit int64
	// Disk is the app's current disk use.
	Disk Usage
}

// WriteTo writes the report as aligned text, implementing io.WriterTo.
func (r Report) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "=====> %s resource report\n", r.App)
	limit := "none"
	if r.DiskLimit > 0 {
		limit = units.FormatSize(r.DiskLimit)
	}
	inodes := "-"
	if r.Disk.Inodes >= 0 {
		inodes = strconv.FormatInt(r.Disk.Inodes, 10)
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Disk driver:\t%s\n", r.DiskDriver)
	fmt.Fprintf(tw, "Disk limit:\t%s\n", limit)
	fmt.Fprintf(tw, "Disk used:\t%s (%d bytes, %s inodes)\n", units.HumanSize(r.Disk.Bytes), r.Disk.Bytes, inodes)
	tw.Flush()
	n, err := io.WriteString(w, b.String())
	if err != nil {
		return int64(n), fmt.Errorf("write report: %w", err)
	}
	return int64(n), nil
}
