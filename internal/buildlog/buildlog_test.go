package buildlog

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestReadTail(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name      string
		path      string
		n         int64
		want      string
		wantTrunc bool
		wantErr   error
	}{
		{name: "shorter than the cap", path: write("short", "step 1\nstep 2\n"), n: 100, want: "step 1\nstep 2\n"},
		{name: "exactly the cap", path: write("exact", "0123456789"), n: 10, want: "0123456789"},
		{name: "longer than the cap keeps the end", path: write("long", "0123456789"), n: 4, want: "6789", wantTrunc: true},
		{name: "empty", path: write("empty", ""), n: 10, want: ""},
		{name: "missing", path: filepath.Join(dir, "gone"), n: 10, wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, trunc, err := ReadTail(tt.path, tt.n)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want || trunc != tt.wantTrunc {
				t.Errorf("ReadTail = %q, %v; want %q, %v", b, trunc, tt.want, tt.wantTrunc)
			}
		})
	}
}
