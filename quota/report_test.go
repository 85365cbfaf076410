package quota

import (
	"strings"
	"testing"
)

func TestReportWriteTo(t *testing.T) {
	r := Report{
		App:        "myapp",
		DiskDriver: DriverBtrfs,
		DiskLimit:  1 << 30,
		Disk:       Usage{Bytes: 3 << 20, Inodes: 12},
	}
	var b strings.Builder
	if _, err := r.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"myapp", "btrfs", "Disk limit:   1g", "3.0m", "12 inodes"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
