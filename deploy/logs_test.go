package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeLog writes n CRI records of text to path.
func writeLog(t *testing.T, path string, start time.Time, n int, text string) {
	t.Helper()
	var b []byte
	for i := 0; i < n; i++ {
		b = start.Add(time.Duration(i)*time.Millisecond).UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, fmt.Sprintf(" stdout F %s %d\n", text, i)...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLogRotationBoundsAnAppsLogs(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), Domain: "x.test", LogFileBytes: 4 << 10, LogAppBytes: 16 << 10}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	d := &Deployer{cfg: cfg, log: cfg.Logger}
	dir := d.appLogDir("app")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// Ten files of gone containers, about 3.5 KiB each, oldest first.
	for i := 0; i < 10; i++ {
		p := filepath.Join(dir, fmt.Sprintf("worker.1-%016x.log", i))
		writeLog(t, p, t0.Add(time.Duration(i)*time.Second), 80, fmt.Sprintf("old%d", i))
		mt := t0.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	// A live container's file over the rotation size.
	live := "00000000000000ff"
	livePath := d.containerLogPath("app", "web.1", live)
	writeLog(t, livePath, t0.Add(time.Hour), 150, "live")

	d.rotateLogs(map[string]bool{live: true})

	if st, err := os.Stat(livePath); err != nil || st.Size() != 0 {
		t.Fatalf("live file after rotation: %v, %v; want it truncated", st, err)
	}
	if b, err := os.ReadFile(livePath + ".1"); err != nil || !bytes.Contains(b, []byte("live 149")) {
		t.Fatalf("rotated file: %v; want the live lines", err)
	}
	// The next round counts the rotated file and removes the oldest dead ones.
	d.rotateLogs(map[string]bool{live: true})
	var total int64
	files, _ := os.ReadDir(dir)
	names := map[string]bool{}
	for _, f := range files {
		info, _ := f.Info()
		total += info.Size()
		names[f.Name()] = true
	}
	if total > cfg.LogAppBytes {
		t.Fatalf("app logs take %d bytes, bound is %d", total, cfg.LogAppBytes)
	}
	if names[fmt.Sprintf("worker.1-%016x.log", 0)] || !names[fmt.Sprintf("worker.1-%016x.log", 9)] {
		t.Fatalf("retention removed the wrong files: %v", names)
	}
	if !names["web.1-"+live+".log.1"] || !names["web.1-"+live+".log"] {
		t.Fatalf("the live container's files are gone: %v", names)
	}
	// Reading spans the rotated file.
	var out bytes.Buffer
	if err := d.ReadLogs(context.Background(), "app", LogOptions{Lines: 3, ProcessType: "web"}, &out); err != nil {
		t.Fatal(err)
	}
	want := "web.1[stdout]: live 147\n"
	if strings.Count(out.String(), "\n") != 3 || !strings.Contains(out.String(), want) {
		t.Fatalf("logs -n 3 -p web = %q", out.String())
	}
}

func TestBuildLogsAreKeptPerDeployAndBounded(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), Domain: "x.test", BuildLogsKept: 3}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	d := &Deployer{cfg: cfg, log: cfg.Logger}
	var paths []string
	for i := 1; i <= 5; i++ {
		p, err := d.BuildLogPath("app", int64(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf("build %d\n", i)), 0o600); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(time.Duration(i-10) * time.Minute)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	p, err := d.NewBuildLogPath("app")
	if err != nil || filepath.Dir(p) != filepath.Dir(paths[0]) || !strings.HasSuffix(p, ".log") {
		t.Fatalf("NewBuildLogPath = %q, %v", p, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	// Room for the new one: the two newest of the five are kept.
	if strings.Join(names, " ") != "4.log 5.log" {
		t.Fatalf("build logs kept: %v", names)
	}
	if _, err := d.BuildLogPath("../etc", 1); err == nil {
		t.Fatal("BuildLogPath accepted a bad app name")
	}
}
