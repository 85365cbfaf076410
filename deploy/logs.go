package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/engine"
)

// The per-app log lives in DATA/logs/APP. Every container writes its own
// file there, named TYPE.N-ENGINEID.log, straight from the container's init
// (the engine's LogPath), so no line passes through the daemon and nothing
// is lost when the daemon restarts. The files outlive their containers,
// which keeps the log across redeploys; a file over Config.LogFileBytes is
// rotated to NAME.1 (copy, then truncate: the init appends with O_APPEND),
// and the oldest files of gone containers are removed once the app's logs
// exceed Config.LogAppBytes. Deploy events go to berth.log in the same
// format. Build output is kept per deploy in builds/DEPLOYID.log.

// LogOptions selects what Logs prints.
type LogOptions struct {
	// Lines is how many of the latest lines to print first; 0 means 100,
	// a negative value none.
	Lines int
	// Follow keeps printing new lines, across container replacement, until
	// the context ends.
	Follow bool
	// ProcessType limits the output to one process type ("web"), or to
	// one instance ("web.1"); empty means all.
	ProcessType string
}

const systemLog = "berth"

// logLine is one parsed line of an app log.
type logLine struct {
	t      time.Time
	proc   string // "web.1" or "berth"
	stream string
	text   string
}

func (l logLine) format(b []byte) []byte {
	b = l.t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, l.proc...)
	b = append(b, '[')
	b = append(b, l.stream...)
	b = append(b, "]: "...)
	b = append(b, l.text...)
	return append(b, '\n')
}

// appLogDir is DATA/logs/APP.
func (d *Deployer) appLogDir(app string) string {
	return filepath.Join(d.cfg.DataDir, "logs", app)
}

// containerLogPath is the log file of one container.
func (d *Deployer) containerLogPath(app, proc, id string) string {
	return filepath.Join(d.appLogDir(app), proc+"-"+id+".log")
}

// BuildLogPath returns the file that keeps the build output of one deploy,
// creating its directory. The command layer writes the build output there
// while it streams it to the user; an app keeps its newest
// Config.BuildLogsKept build logs.
func (d *Deployer) BuildLogPath(app string, deployID int64) (string, error) {
	return d.buildLogFile(app, strconv.FormatInt(deployID, 10))
}

// NewBuildLogPath is BuildLogPath for a deploy that has no ID yet (platform's
// StartDeploy takes the path): the file is named after the current time.
func (d *Deployer) NewBuildLogPath(app string) (string, error) {
	return d.buildLogFile(app, time.Now().UTC().Format("20060102T150405.000000000Z")+"-"+newLogID()[:6])
}

func (d *Deployer) buildLogFile(app, name string) (string, error) {
	if err := validAppName(app); err != nil {
		return "", err
	}
	dir := filepath.Join(d.appLogDir(app), "builds")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create build log dir: %w", err)
	}
	d.pruneBuildLogs(dir)
	return filepath.Join(dir, name+".log"), nil
}

// pruneBuildLogs keeps the newest BuildLogsKept-1 files of dir, making
// room for one more.
func (d *Deployer) pruneBuildLogs(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type f struct {
		name string
		mod  time.Time
	}
	var fs []f
	for _, e := range ents {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".log") {
			fs = append(fs, f{e.Name(), info.ModTime()})
		}
	}
	if len(fs) < d.cfg.BuildLogsKept {
		return
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].mod.Before(fs[j].mod) })
	for _, x := range fs[:len(fs)-d.cfg.BuildLogsKept+1] {
		_ = os.Remove(filepath.Join(dir, x.name))
	}
}

// event appends a deploy event to the app's berth.log and to the daemon log.
func (d *Deployer) event(app, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	d.log.Info(msg, "app", app)
	d.logMu.Lock()
	defer d.logMu.Unlock()
	if err := os.MkdirAll(d.appLogDir(app), 0o700); err != nil {
		return
	}
	f, err := os.OpenFile(filepath.Join(d.appLogDir(app), systemLog+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	var b []byte
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, " stdout F "...)
	b = append(b, strings.ReplaceAll(msg, "\n", " ")...)
	b = append(b, '\n')
	_, _ = f.Write(b)
}

// logFile is one file of an app log.
type logFile struct {
	path string
	proc string // "web.1" or "berth"
	id   string // engine id; empty for berth.log
	old  bool   // a rotated ".1" file
}

// parseLogName splits "web.1-0123456789abcdef.log[.1]" and "berth.log".
func parseLogName(dir, name string) (logFile, bool) {
	f := logFile{path: filepath.Join(dir, name)}
	base := name
	if b, ok := strings.CutSuffix(name, ".log.1"); ok {
		base, f.old = b, true
	} else if b, ok := strings.CutSuffix(name, ".log"); ok {
		base = b
	} else {
		return f, false
	}
	if base == systemLog {
		f.proc = systemLog
		return f, true
	}
	proc, id, ok := strings.Cut(base, "-")
	if !ok || len(id) != 16 || !strings.Contains(proc, ".") {
		return f, false
	}
	f.proc, f.id = proc, id
	return f, true
}

// listLogFiles returns the app's log files matching the filter.
func (d *Deployer) listLogFiles(app, filter string) ([]logFile, error) {
	dir := d.appLogDir(app)
	ents, err := os.ReadDir(dir)
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list log files: %w", err)
	}
	var out []logFile
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		f, ok := parseLogName(dir, e.Name())
		if !ok || !procMatches(f.proc, filter) {
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

func procMatches(proc, filter string) bool {
	if filter == "" {
		return true
	}
	if strings.Contains(filter, ".") {
		return proc == filter
	}
	typ, _, _ := strings.Cut(proc, ".")
	return typ == filter
}

// parseLines parses CRI log records, joining partial records.
func parseLines(proc string, b []byte, out []logLine) []logLine {
	var partial *logLine
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		var rec []byte
		if i < 0 {
			rec, b = b, nil
		} else {
			rec, b = b[:i], b[i+1:]
		}
		ent, err := engine.ParseLogLine(rec)
		if err != nil {
			continue
		}
		if partial != nil {
			partial.text += ent.Text
			if !ent.Partial {
				out = append(out, *partial)
				partial = nil
			}
			continue
		}
		l := logLine{t: ent.Time, proc: proc, stream: ent.Stream, text: ent.Text}
		if ent.Partial {
			partial = &l
			continue
		}
		out = append(out, l)
	}
	if partial != nil {
		out = append(out, *partial)
	}
	return out
}

// tailFile returns about the last n records of a file and the file size
// they were read up to (only whole lines are consumed).
func tailFile(path string, n int) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	size := st.Size()
	if n <= 0 {
		return nil, size, nil
	}
	const chunk = 64 << 10
	var buf []byte
	off := size
	for off > 0 && bytes.Count(buf, []byte{'\n'}) <= n {
		step := int64(chunk)
		if off < step {
			step = off
		}
		off -= step
		b := make([]byte, step)
		if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
			return nil, 0, err
		}
		buf = append(b, buf...)
	}
	// Only whole lines: what follows the last newline is still being written.
	end := bytes.LastIndexByte(buf, '\n') + 1
	consumed := off + int64(end)
	buf = buf[:end]
	if off > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return buf, consumed, nil
}

// Logs is the logs command: the last lines lines (0 means 100) of the app's
// log, only of processType when it is not empty ("web" or "web.1"), and
// with follow the new lines until ctx ends. See ReadLogs.
func (d *Deployer) Logs(ctx context.Context, app string, lines int, follow bool, processType string, w io.Writer) error {
	return d.ReadLogs(ctx, app, LogOptions{Lines: lines, Follow: follow, ProcessType: processType}, w)
}

// ReadLogs writes the app's log to w, one "TIME TYPE.N[STREAM]: LINE" per
// line: the last opts.Lines lines of every process (and berth's deploy
// events as "berth"), oldest first, then, with Follow, new lines as they
// are written, including those of containers started later, until ctx
// ends.
func (d *Deployer) ReadLogs(ctx context.Context, app string, opts LogOptions, w io.Writer) error {
	if err := validAppName(app); err != nil {
		return err
	}
	n := opts.Lines
	if n == 0 {
		n = 100
	}
	files, err := d.listLogFiles(app, opts.ProcessType)
	if err != nil {
		return err
	}
	offsets := map[string]int64{}
	var lines []logLine
	for _, f := range files {
		b, off, err := tailFile(f.path, n)
		if err != nil {
			continue // removed by retention meanwhile
		}
		if !f.old {
			offsets[f.path] = off
		}
		lines = parseLines(f.proc, b, lines)
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].t.Before(lines[j].t) })
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if n < 0 {
		lines = nil
	}
	if err := writeLines(w, lines); err != nil {
		return err
	}
	if !opts.Follow {
		return nil
	}
	return d.followLogs(ctx, app, opts.ProcessType, offsets, w)
}

func writeLines(w io.Writer, lines []logLine) error {
	if len(lines) == 0 {
		return nil
	}
	var b []byte
	for _, l := range lines {
		b = l.format(b)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write logs: %w", err)
	}
	switch f := w.(type) {
	case interface{ Flush() error }:
		return f.Flush()
	case interface{ Flush() }: // http.Flusher: live logs in the dashboard
		f.Flush()
	}
	return nil
}

// followLogs polls the app's log directory and prints what was appended
// since offsets, including files that appear later.
func (d *Deployer) followLogs(ctx context.Context, app, filter string, offsets map[string]int64, w io.Writer) error {
	t := time.NewTicker(d.cfg.LogPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		files, err := d.listLogFiles(app, filter)
		if err != nil {
			return err
		}
		var lines []logLine
		seen := map[string]bool{}
		for _, f := range files {
			if f.old {
				continue
			}
			seen[f.path] = true
			b, off, err := readFrom(f.path, offsets[f.path])
			if err != nil {
				continue
			}
			offsets[f.path] = off
			lines = parseLines(f.proc, b, lines)
		}
		for p := range offsets {
			if !seen[p] {
				delete(offsets, p)
			}
		}
		sort.SliceStable(lines, func(i, j int) bool { return lines[i].t.Before(lines[j].t) })
		if err := writeLines(w, lines); err != nil {
			return err
		}
	}
}

// readFrom reads the whole lines appended to path after off. A file that
// shrank was rotated (truncated): reading starts again at its beginning.
func readFrom(path string, off int64) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, off, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, off, err
	}
	if st.Size() < off {
		off = 0
	}
	if st.Size() == off {
		return nil, off, nil
	}
	b := make([]byte, st.Size()-off)
	m, err := f.ReadAt(b, off)
	if err != nil && err != io.EOF {
		return nil, off, err
	}
	b = b[:m]
	end := bytes.LastIndexByte(b, '\n') + 1
	return b[:end], off + int64(end), nil
}

// tailOutput returns the last n lines a container printed, for error messages.
func (d *Deployer) tailOutput(app, proc, id string, n int) string {
	b, _, err := tailFile(d.containerLogPath(app, proc, id), n)
	if err != nil {
		return ""
	}
	lines := parseLines(proc, b, nil)
	var sb strings.Builder
	for _, l := range lines {
		sb.Write(l.format(nil))
	}
	return sb.String()
}

// rotateLogs enforces the size bounds of every app's log: live files over
// LogFileBytes are rotated, and files of gone containers are removed,
// oldest first, while the app's logs exceed LogAppBytes.
func (d *Deployer) rotateLogs(live map[string]bool) {
	root := filepath.Join(d.cfg.DataDir, "logs")
	apps, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, a := range apps {
		if !a.IsDir() {
			continue
		}
		d.rotateApp(a.Name(), live)
	}
}

func (d *Deployer) rotateApp(app string, live map[string]bool) {
	files, err := d.listLogFiles(app, "")
	if err != nil {
		return
	}
	type sized struct {
		logFile
		size  int64
		mtime time.Time
	}
	var all []sized
	var total int64
	for _, f := range files {
		st, err := os.Stat(f.path)
		if err != nil {
			continue
		}
		if !f.old && st.Size() > d.cfg.LogFileBytes && (f.id == "" || live[f.id]) {
			if err := rotateFile(f.path, &d.logMu); err != nil {
				d.log.Warn("rotate log", "app", app, "file", filepath.Base(f.path), "err", err)
			}
			continue // sizes are counted again next round
		}
		all = append(all, sized{f, st.Size(), st.ModTime()})
		total += st.Size()
	}
	if total <= d.cfg.LogAppBytes {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	for _, f := range all {
		if total <= d.cfg.LogAppBytes {
			break
		}
		if f.id != "" && live[f.id] && !f.old {
			continue
		}
		if f.id == "" && !f.old {
			continue
		}
		if os.Remove(f.path) == nil {
			total -= f.size
		}
	}
}

// rotateFile copies path to path.1 and truncates path. The writer appends
// with O_APPEND, so it continues at the new end; a line written between
// the copy and the truncate can be lost, which is the price of not
// routing every line through the daemon.
func rotateFile(path string, mu *sync.Mutex) error {
	mu.Lock()
	defer mu.Unlock()
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := path + ".1.tmp"
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path+".1"); err != nil {
		return err
	}
	// Keep what was appended after the copy: truncating to zero would lose it.
	rest, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := os.Truncate(path, 0); err != nil {
		return err
	}
	if int64(len(rest)) > n {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.Write(rest[n:])
		return err
	}
	return nil
}
