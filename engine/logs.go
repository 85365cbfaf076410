package engine

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// Log lines use the CRI log format, one record a line:
//
//	2026-11-23T08:36:00.123456789Z stdout F hello
//
// The third field is F for a full line and P for a part of a line that was
// longer than maxLogLine; the following records continue it.
const maxLogLine = 16 << 10

// LogEntry is one record of a container log.
type LogEntry struct {
	// Time is when the engine read the line.
	Time time.Time
	// Stream is "stdout" or "stderr".
	Stream string
	// Partial is true when Text is a part of a longer line continued by the next entry.
	Partial bool
	// Text is the line without its trailing newline.
	Text string
}

// ParseLogLine parses one log record (without the trailing newline).
func ParseLogLine(line []byte) (LogEntry, error) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return LogEntry{}, fmt.Errorf("%w: no stream field", ErrInvalidLogLine)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return LogEntry{}, fmt.Errorf("%w: bad time: %v", ErrInvalidLogLine, err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return LogEntry{}, fmt.Errorf("%w: no tag field", ErrInvalidLogLine)
	}
	if s := string(stream); s != "stdout" && s != "stderr" {
		return LogEntry{}, fmt.Errorf("%w: unknown stream %q", ErrInvalidLogLine, stream)
	}
	tag, text, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return LogEntry{}, fmt.Errorf("%w: no text field", ErrInvalidLogLine)
	}
	if t := string(tag); t != "F" && t != "P" {
		return LogEntry{}, fmt.Errorf("%w: unknown tag %q", ErrInvalidLogLine, tag)
	}
	if bytes.IndexByte(text, '\n') >= 0 {
		return LogEntry{}, fmt.Errorf("%w: newline inside record", ErrInvalidLogLine)
	}
	return LogEntry{Time: t, Stream: string(stream), Partial: tag[0] == 'P', Text: string(text)}, nil
}

// appendLogLine formats one record into b.
func appendLogLine(b []byte, t time.Time, stream string, partial bool, text []byte) []byte {
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	if partial {
		b = append(b, " P "...)
	} else {
		b = append(b, " F "...)
	}
	b = append(b, text...)
	return append(b, '\n')
}

// logWriter serialises records of several streams into one writer.
type logWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (lw *logWriter) write(stream string, partial bool, text []byte) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.buf = appendLogLine(lw.buf[:0], time.Now(), stream, partial, text)
	_, _ = lw.w.Write(lw.buf)
}

// copyStream reads r until EOF and writes one record per line.
func (lw *logWriter) copyStream(stream string, r io.Reader) {
	buf := make([]byte, 32<<10)
	n := 0
	for {
		m, err := r.Read(buf[n:])
		n += m
		start := 0
		for {
			i := bytes.IndexByte(buf[start:n], '\n')
			if i < 0 {
				break
			}
			line := buf[start : start+i]
			for len(line) > maxLogLine {
				lw.write(stream, true, line[:maxLogLine])
				line = line[maxLogLine:]
			}
			lw.write(stream, false, line)
			start += i + 1
		}
		for n-start >= maxLogLine {
			lw.write(stream, true, buf[start:start+maxLogLine])
			start += maxLogLine
		}
		n = copy(buf, buf[start:n])
		if err != nil {
			if n > 0 {
				lw.write(stream, false, buf[:n])
			}
			return
		}
	}
}
