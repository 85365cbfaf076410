package router

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAppendSeconds(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want string
	}{
		{name: "zero", d: 0, want: "0.0000"},
		{name: "sub-millisecond", d: 1234 * time.Microsecond, want: "0.0012"},
		{name: "seconds", d: 3*time.Second + 45*time.Millisecond, want: "3.0450"},
		{name: "negative clamps", d: -time.Second, want: "0.0000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(appendSeconds(nil, tc.d)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTimestampCache(t *testing.T) {
	a := &accessLog{}
	t0 := time.Date(2026, 1, 2, 15, 4, 5, 123_000_000, time.UTC)
	tests := []struct {
		name string
		at   time.Time
		want string
	}{
		{name: "first", at: t0, want: "2026-01-02T15:04:05.123Z"},
		{name: "same millisecond", at: t0.Add(500 * time.Microsecond), want: "2026-01-02T15:04:05.123Z"},
		{name: "next millisecond", at: t0.Add(time.Millisecond), want: "2026-01-02T15:04:05.124Z"},
		{name: "other zone", at: t0.In(time.FixedZone("x", 3600)), want: "2026-01-02T15:04:05.123Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := a.timestamp(tc.at)
			if got := string(ts[:]); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAccessLogConcurrentBatches(t *testing.T) {
	var sink syncBuffer
	a := &accessLog{w: &sink}
	a.setBuffered(true)
	const writers, lines = 8, 2000
	done := make(chan struct{})
	for i := 0; i < writers; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := 0; j < lines; j++ {
				a.write([]byte(fmt.Sprintf("writer=%d line=%05d %s\n", i, j, strings.Repeat("x", 40))))
			}
		}()
	}
	for i := 0; i < writers; i++ {
		<-done
	}
	a.setBuffered(false)
	got := strings.Split(strings.TrimSuffix(sink.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines, want %d", len(got), writers*lines)
	}
	last := map[string]string{}
	for _, l := range got {
		f := strings.Fields(l)
		if len(f) != 3 || len(f[2]) != 40 {
			t.Fatalf("torn line %q", l)
		}
		if prev, ok := last[f[0]]; ok && f[1] <= prev {
			t.Fatalf("%s: %s after %s", f[0], f[1], prev)
		}
		last[f[0]] = f[1]
	}
}
