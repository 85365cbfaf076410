package router

import (
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const accessLogFlushSize = 32 << 10

// accessLog collects access log lines. While the router serves, lines are
// buffered and flushed every 200ms or every 32KiB, so a busy router makes one
// write per batch, not one per request; otherwise each line is written at once.
type accessLog struct {
	mu       sync.Mutex
	wmu      sync.Mutex // held while writing to w
	w        io.Writer
	buf      []byte
	spare    []byte
	buffered bool
	// stamp caches the formatted time of the current millisecond: at tens
	// of thousands of requests a second, most lines share it.
	stamp atomic.Pointer[logStamp]
}

type logStamp struct {
	ms   int64
	text [24]byte
}

// timestamp returns t formatted as 2006-01-02T15:04:05.000Z.
func (a *accessLog) timestamp(t time.Time) [24]byte {
	ms := t.UnixMilli()
	if st := a.stamp.Load(); st != nil && st.ms == ms {
		return st.text
	}
	st := &logStamp{ms: ms}
	// AppendFormat may outgrow a full-length destination while it works.
	var tmp [40]byte
	copy(st.text[:], t.UTC().AppendFormat(tmp[:0], "2006-01-02T15:04:05.000Z"))
	a.stamp.Store(st)
	return st.text
}

func (a *accessLog) setBuffered(on bool) {
	a.mu.Lock()
	a.buffered = on
	a.mu.Unlock()
	if !on {
		a.flush()
	}
}

func (a *accessLog) write(line []byte) {
	a.mu.Lock()
	a.buf = append(a.buf, line...)
	if a.buffered && len(a.buf) < accessLogFlushSize {
		a.mu.Unlock()
		return
	}
	a.writeOut() // unlocks a.mu
}

func (a *accessLog) flush() {
	a.mu.Lock()
	if len(a.buf) == 0 {
		a.mu.Unlock()
		return
	}
	a.writeOut()
}

// writeOut writes the buffer out; it is called with a.mu held and releases
// it before the write, so requests go on logging into a fresh buffer while
// the sink is slow. a.wmu, taken before a.mu is released, keeps batches in
// order.
func (a *accessLog) writeOut() {
	out := a.buf
	a.buf = a.spare[:0]
	a.spare = nil
	a.wmu.Lock()
	a.mu.Unlock()
	a.w.Write(out) //nolint:errcheck // a failing log sink must not fail requests
	a.wmu.Unlock()
	a.mu.Lock()
	if a.spare == nil {
		a.spare = out[:0]
	}
	a.mu.Unlock()
}

// logEntry is what the access log records of one request served by the
// net/http path (the HTTPS listener and ServeHTTP).
type logEntry struct {
	start    time.Time
	remote   string
	host     string
	method   string
	uri      string
	proto    string
	status   int
	bytes    int64
	upstream string
	id       string
}

// appendLine formats one access log line:
//
//	2026-01-02T15:04:05.000Z 10.0.0.9 app.example.com "GET /x HTTP/1.1" 200 12 0.0012 10.20.0.5:5000 id
//
// The fields are time, client, host, request, status, body bytes, duration
// in seconds, backend ("-" if none) and request id.
func (e *logEntry) appendLine(a *accessLog, b []byte, now time.Time) []byte {
	ts := a.timestamp(e.start)
	b = appendLogPrefix(b, ts[:], clientIP(e.remote), e.host, e.method, e.uri, e.proto)
	return appendLogSuffix(b, e.status, e.bytes, now.Sub(e.start), e.upstream, e.id)
}

// appendLogPrefix appends the fields known when a request arrives.
func appendLogPrefix[T ~string | ~[]byte](b []byte, stamp []byte, ip string, host, method, uri T, proto string) []byte {
	b = append(b, stamp...)
	b = append(b, ' ')
	b = appendField(b, ip)
	b = append(b, ' ')
	b = appendField(b, host)
	b = append(b, ' ', '"')
	b = appendSafe(b, method)
	b = append(b, ' ')
	b = appendSafe(b, uri)
	b = append(b, ' ')
	b = append(b, proto...)
	return append(b, '"', ' ')
}

// appendLogSuffix appends the fields known when a response is done.
func appendLogSuffix[T ~string | ~[]byte](b []byte, status int, n int64, d time.Duration, upstream string, id T) []byte {
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, n, 10)
	b = append(b, ' ')
	b = appendSeconds(b, d)
	b = append(b, ' ')
	b = appendField(b, upstream)
	b = append(b, ' ')
	b = appendField(b, id)
	return append(b, '\n')
}

func appendField[T ~string | ~[]byte](b []byte, s T) []byte {
	if len(s) == 0 {
		return append(b, '-')
	}
	return appendSafe(b, s)
}

// appendSafe appends s with bytes that could break the line format escaped.
func appendSafe[T ~string | ~[]byte](b []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendSeconds appends d in seconds with four decimals, without floats.
func appendSeconds(b []byte, d time.Duration) []byte {
	us := max(d.Microseconds(), 0)
	b = strconv.AppendInt(b, us/1_000_000, 10)
	frac := (us % 1_000_000) / 100
	return append(b, '.', byte('0'+frac/1000), byte('0'+frac/100%10), byte('0'+frac/10%10), byte('0'+frac%10))
}
