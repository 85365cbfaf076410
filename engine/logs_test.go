package engine

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    LogEntry
		wantErr bool
	}{
		{name: "full", line: "2026-11-23T08:36:00.123456789Z stdout F hello world", want: LogEntry{Time: time.Date(2026, 11, 23, 8, 36, 0, 123456789, time.UTC), Stream: "stdout", Text: "hello world"}},
		{name: "partial stderr", line: "2026-11-23T08:36:00Z stderr P part", want: LogEntry{Time: time.Date(2026, 11, 23, 8, 36, 0, 0, time.UTC), Stream: "stderr", Partial: true, Text: "part"}},
		{name: "empty text", line: "2026-11-23T08:36:00Z stdout F ", want: LogEntry{Time: time.Date(2026, 11, 23, 8, 36, 0, 0, time.UTC), Stream: "stdout"}},
		{name: "bad time", line: "yesterday stdout F x", wantErr: true},
		{name: "bad stream", line: "2026-11-23T08:36:00Z stdin F x", wantErr: true},
		{name: "bad tag", line: "2026-11-23T08:36:00Z stdout X x", wantErr: true},
		{name: "truncated", line: "2026-11-23T08:36:00Z stdout", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLogLine([]byte(tc.line))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error for %q", tc.line)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Time.Equal(tc.want.Time) || got.Stream != tc.want.Stream || got.Partial != tc.want.Partial || got.Text != tc.want.Text {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCopyStreamSplitsLongLines(t *testing.T) {
	var out bytes.Buffer
	lw := &logWriter{w: &out}
	long := strings.Repeat("x", maxLogLine+10)
	lw.copyStream("stdout", strings.NewReader("a\n"+long+"\nlast-without-newline"))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d records, want 4", len(lines))
	}
	var texts []string
	for _, l := range lines {
		e, err := ParseLogLine([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, e.Text)
		if e.Partial != (len(e.Text) == maxLogLine) {
			t.Errorf("partial flag wrong for a %d-byte record", len(e.Text))
		}
	}
	if texts[0] != "a" || texts[1]+texts[2] != long || texts[3] != "last-without-newline" {
		t.Fatalf("records %q", texts)
	}
}

// FuzzParseLogLine checks that parsing never panics and that what parses
// formats back to the same record.
func FuzzParseLogLine(f *testing.F) {
	f.Add([]byte("2026-11-23T08:36:00.123456789Z stdout F hello"))
	f.Add([]byte("2026-11-23T08:36:00Z stderr P x y z"))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseLogLine(line)
		if err != nil {
			return
		}
		again, err := ParseLogLine(bytes.TrimSuffix(appendLogLine(nil, e.Time, e.Stream, e.Partial, []byte(e.Text)), []byte("\n")))
		if err != nil || again.Text != e.Text || again.Stream != e.Stream || again.Partial != e.Partial || !again.Time.Equal(e.Time) {
			t.Fatalf("round trip of %q: %+v vs %+v (%v)", line, e, again, err)
		}
	})
}

// FuzzValidate checks that Validate never panics on odd limits and IDs.
func FuzzValidate(f *testing.F) {
	f.Add(int64(0), int64(0), 0.5, "0-1", uint32(100000), uint32(65536), uint32(0))
	f.Add(int64(-1), int64(10), -1.0, "x", uint32(0), uint32(0), uint32(5))
	f.Fuzz(func(t *testing.T, mem, pids int64, quota float64, cpuset string, host, size, uid uint32) {
		s := Spec{Layers: []string{"/l"}, Process: Process{Args: []string{"x"}, UID: uid}, IDMap: IDMap{HostUID: host, HostGID: host, Size: size},
			Limits: Limits{MemoryBytes: mem, Pids: pids, CPUQuota: quota, Cpuset: cpuset}}
		if err := s.Validate(); err == nil {
			if mem < 0 || pids < 0 || quota < 0 || host == 0 || uid >= s.IDMap.size() {
				t.Fatalf("accepted %+v", s)
			}
		}
	})
}
