package router

import (
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The write timeout (Config.WriteTimeout) on the goroutine path and the
// HTTPS listener: a sweep (fastServer.sweep; writeWatchers.sweep every
// writeSweep for HTTPS) looks at the writes to clients in progress and
// cuts, abortively (abortWrites), those that have not moved for the
// timeout. The event loops keep their own (evLoop.sweep). A write deadline
// per write would cut a slow download whose one write outlasts the
// timeout, and cost a clock reading and a timer update per write; the
// sweep costs two atomic additions per write.

// writeSweep is how often the HTTPS listener looks for stalled writes.
const writeSweep = 500 * time.Millisecond

// writeWatch tells a stalled write to a client from a slow one.
type writeWatch struct {
	// calls counts the writes begun and ended: odd while one waits.
	calls atomic.Uint64

	// For the sweep only: the count and the send queue (connUnsent) it
	// last saw, since when, and whether it has cut the write.
	seen  uint64
	queue int
	since int64
	cut   bool
}

// write writes p to w, counted.
func (ww *writeWatch) write(w io.Writer, p []byte) (int, error) {
	ww.calls.Add(1)
	n, err := w.Write(p)
	ww.calls.Add(1)
	return n, err
}

// copy copies src to c (a tunnel's bytes to the client) as one write:
// only the client taking bytes from c's send queue moves it, and while the
// queue is empty it waits on src (an idle websocket), which is no stall.
// Where the queue is unknown (not Linux) the copy is not watched. io.Copy
// still splices from a TCP source.
func (ww *writeWatch) copy(c net.Conn, src io.Reader) (int64, error) {
	if connUnsent(c) < 0 {
		return io.Copy(c, src)
	}
	ww.calls.Add(1)
	defer ww.calls.Add(1)
	return io.Copy(c, src)
}

// stalled reports, once, that a write has not moved for timeout: neither
// has it ended nor has the client taken bytes from c's send queue (c is
// nil for an HTTP/2 stream, whose writes end as the client takes them).
func (ww *writeWatch) stalled(now int64, timeout time.Duration, c net.Conn) bool {
	n := ww.calls.Load()
	if ww.cut || n&1 == 0 {
		ww.seen = n
		return false
	}
	q := -1
	if c != nil {
		q = connUnsent(c)
	}
	if n != ww.seen || q != ww.queue {
		ww.seen, ww.queue, ww.since = n, q, now
		return false
	}
	// A write that waits on a full socket has a send queue; with none,
	// it waits on its source (copy).
	ww.cut = q != 0 && now-ww.since > int64(timeout)
	return ww.cut
}

// abortWrites fails c's writes, the one waiting and those to come, and
// makes its close abortive (SO_LINGER 0): the kernel then drops the bytes
// the client has not taken and resets the connection, instead of holding
// them for a client that stopped reading.
func abortWrites(c net.Conn) {
	if tc, ok := c.(interface{ SetLinger(int) error }); ok {
		tc.SetLinger(0) //nolint:errcheck // the close is then only graceful
	}
	c.SetWriteDeadline(aLongTimeAgo)
}

// stallChecker is a client connection or stream the write sweep watches.
type stallChecker interface {
	// checkWrite cuts the write in progress if it has not moved for
	// timeout.
	checkWrite(now int64, timeout time.Duration)
}

// writeWatchers is the set of HTTPS client connections and HTTP/2 streams
// the write sweep watches.
type writeWatchers struct {
	mu  sync.Mutex
	set map[stallChecker]struct{}
}

func (ws *writeWatchers) add(c stallChecker) {
	ws.mu.Lock()
	if ws.set == nil {
		ws.set = make(map[stallChecker]struct{})
	}
	ws.set[c] = struct{}{}
	ws.mu.Unlock()
}

func (ws *writeWatchers) remove(c stallChecker) {
	ws.mu.Lock()
	delete(ws.set, c)
	ws.mu.Unlock()
}

// sweep cuts the stalled writes. A stream's cut runs under the lock, so
// that its handler, which removes the stream before it returns, is still
// running.
func (ws *writeWatchers) sweep(timeout time.Duration) {
	now := time.Now().UnixNano()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for c := range ws.set {
		c.checkWrite(now, timeout)
	}
}

// watchListener hands the HTTPS server its connections as watchedConns.
type watchListener struct {
	net.Listener
	ws *writeWatchers
}

func (l watchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	wc := &watchedConn{Conn: c, ws: l.ws}
	l.ws.add(wc)
	return wc, nil
}

// watchedConn is an HTTPS client connection below TLS. Whatever writes to
// it (HTTP/1.x responses, HTTP/2 frames, a websocket after its upgrade, the
// TLS handshake) is watched, and a write that stalls fails with the
// connection.
type watchedConn struct {
	net.Conn
	ws    *writeWatchers
	watch writeWatch
	// dead is set when the sweep has cut the connection: later writes
	// fail at once, rather than wait for the TLS close alert's deadline.
	dead atomic.Bool
}

func (c *watchedConn) Write(p []byte) (int, error) {
	if c.dead.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	return c.watch.write(c.Conn, p)
}

func (c *watchedConn) Close() error {
	c.ws.remove(c)
	return c.Conn.Close()
}

func (c *watchedConn) checkWrite(now int64, timeout time.Duration) {
	if c.watch.stalled(now, timeout, c.Conn) {
		c.dead.Store(true)
		abortWrites(c.Conn)
	}
}

// streamWriter is the response writer of an HTTP/2 request. A client may
// read its connection while it leaves one stream unread; flow control then
// holds that stream's writes while the connection moves, so the stream is
// watched on its own, and reset (the connection's other streams go on)
// when its writes stall.
type streamWriter struct {
	http.ResponseWriter
	watch writeWatch
}

func (w *streamWriter) Write(p []byte) (int, error) {
	return w.watch.write(w.ResponseWriter, p)
}

// FlushError flushes, counted: a flush waits for the client as a write does.
func (w *streamWriter) FlushError() error {
	w.watch.calls.Add(1)
	defer w.watch.calls.Add(1)
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *streamWriter) Flush() { w.FlushError() } //nolint:errcheck // a failed flush fails the next write

// Unwrap lets http.ResponseController reach the server's writer.
func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *streamWriter) checkWrite(now int64, timeout time.Duration) {
	if w.watch.stalled(now, timeout, nil) {
		// A deadline in the past resets the stream at once, and wakes
		// the write waiting for flow control.
		http.NewResponseController(w.ResponseWriter).SetWriteDeadline(aLongTimeAgo) //nolint:errcheck // HTTP/2 writers support it
	}
}
