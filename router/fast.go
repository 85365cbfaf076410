package router

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the plain-HTTP listener's own HTTP/1.x server. net/http's
// server costs about as much CPU per request as the whole proxying work
// (a background read and deadline changes per request, an http.Request and
// header map per request), so the hot path reads the client's request head
// in place from its buffer, writes it on to a pooled backend connection,
// and copies the response head back line by line: no per-request
// allocation on the common path. The HTTPS listener keeps net/http (TLS,
// HTTP/2) through ServeHTTP.
//
// net/http notices a client that leaves mid-request with a read per
// request; here a sweeper (sweep) watches only the clients whose backends
// have been slow to answer for a second, so fast requests pay nothing. The
// same sweeper cuts clients that stopped taking their responses
// (writetimeout.go).

const (
	clientReadBuf  = 8 << 10
	clientWriteBuf = 8 << 10
	// deadlineSlack is how stale the client read deadline may get before it
	// is pushed forward; moving it on every request costs a timer update.
	deadlineSlack = time.Second
)

// Connection states for drain.
const (
	connIdle int32 = iota
	connActive
	connClosed
	connHijacked // a tunnel: closed after the drain, not waited for
)

// fastServer tracks the connections of one plain-HTTP listener.
type fastServer struct {
	rt       *Router
	ln       net.Listener
	shutting atomic.Bool
	mu       sync.Mutex
	conns    map[*fconn]struct{}
	// loops serve most keep-alive requests (evloop_linux.go); nil where
	// there are none, and every connection has its goroutine.
	loops *evLoops
}

// newFastServer serves plain HTTP on ln; the event loops are off when
// noLoops is set or cannot start.
func newFastServer(rt *Router, ln net.Listener, noLoops bool) *fastServer {
	fs := &fastServer{rt: rt, ln: ln, conns: make(map[*fconn]struct{})}
	if !noLoops {
		loops, err := newEvLoops(fs)
		if err != nil {
			rt.logger.Warn("event loops unavailable; serving a goroutine per connection", "err", err)
		}
		fs.loops = loops
	}
	return fs
}

// adoptConn serves c on its own goroutine; pending are bytes already read
// from it.
func (fs *fastServer) adoptConn(c net.Conn, pending []byte) {
	fc := &fconn{fs: fs, rt: fs.rt, c: c}
	fc.rd.pending = pending
	fc.wr.c = c
	fs.mu.Lock()
	fs.conns[fc] = struct{}{}
	fs.mu.Unlock()
	go fc.serve()
}

// serve accepts connections until the listener is closed.
func (fs *fastServer) serve() error {
	stop := make(chan struct{})
	defer close(stop)
	go fs.sweep(stop)
	var delay time.Duration
	for {
		c, err := fs.ln.Accept()
		if err != nil {
			if fs.shutting.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			// Out of file descriptors and the like: wait and go on, as
			// net/http does, rather than stop serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			fs.rt.logger.Warn("accept failed; retrying", "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if fs.loops.adopt(c) {
			continue
		}
		fs.adoptConn(c, nil)
	}
}

// shutdown stops accepting, closes idle connections as they become idle, and
// waits for the rest until ctx ends; then it closes them all.
func (fs *fastServer) shutdown(done <-chan struct{}) bool {
	fs.shutting.Store(true)
	fs.ln.Close()
	fs.loops.setState(loopDrain)
	defer fs.loops.stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		fs.mu.Lock()
		for fc := range fs.conns {
			if fc.state.CompareAndSwap(connIdle, connClosed) {
				fc.c.Close()
			}
		}
		n := 0
		for fc := range fs.conns {
			if fc.state.Load() != connHijacked {
				n++
			}
		}
		fs.mu.Unlock()
		if n == 0 && fs.loops.live() == 0 {
			return true
		}
		select {
		case <-done:
			fs.loops.setState(loopClose)
			fs.mu.Lock()
			for fc := range fs.conns {
				fc.c.Close()
			}
			fs.mu.Unlock()
			return false
		case <-tick.C:
		}
	}
}

// fconn is one client connection on the plain-HTTP listener.
type fconn struct {
	fs    *fastServer
	rt    *Router
	c     net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	state atomic.Int32
	ip    string
	// deadline is the read deadline in force, in unix nanoseconds.
	deadline int64
	logBuf   []byte
	id       [128]byte
	rd       clientReader
	wr       clientWriter

	// Watching for a client that leaves while its backend is slow to
	// answer (see sweep), all guarded by watchMu: waitState is waitNone,
	// waitWaiting (blocked on the backend's response head since waitStart)
	// or waitWatched (a watcher goroutine reads the client meanwhile).
	watchMu    sync.Mutex
	waitState  int
	waitStart  int64
	waitPC     *pconn
	watchDone  chan struct{}
	clientGone bool // set by the watcher, read after watchDone
}

const (
	waitNone = iota
	waitWaiting
	waitWatched
)

// slowResponse is how long a backend may take to start its response before
// the router watches the client for a disconnect meanwhile.
const slowResponse = time.Second

// startWait records that the connection now waits on pc's response head.
func (fc *fconn) startWait(pc *pconn, now int64) {
	fc.watchMu.Lock()
	fc.waitState, fc.waitStart, fc.waitPC, fc.clientGone = waitWaiting, now, pc, false
	fc.watchMu.Unlock()
}

// endWait ends the wait, stopping the watcher if sweep started one.
func (fc *fconn) endWait() {
	fc.watchMu.Lock()
	defer fc.watchMu.Unlock()
	if fc.waitState == waitWatched {
		fc.c.SetReadDeadline(aLongTimeAgo)
		<-fc.watchDone
		fc.deadline = 0 // extendDeadline sets a real one again
		fc.c.SetReadDeadline(time.Time{})
	}
	fc.waitState, fc.waitPC = waitNone, nil
}

// sweep starts a watcher on the client connections whose backends have been
// slow to answer, so a client that leaves frees its backend request. The
// common fast request never pays for a watcher.
func (fs *fastServer) sweep(stop <-chan struct{}) {
	tick := time.NewTicker(slowResponse / 2)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		cutoff := now - int64(slowResponse)
		fs.mu.Lock()
		for fc := range fs.conns {
			fc.watchMu.Lock()
			if fc.waitState == waitWaiting && fc.waitStart < cutoff {
				fc.waitState = waitWatched
				fc.watchDone = make(chan struct{})
				go fc.watch(fc.waitPC, fc.watchDone)
			}
			fc.watchMu.Unlock()
			fc.checkWrite(now)
		}
		fs.mu.Unlock()
	}
}

// checkWrite fails a write to the client that has not moved for
// WriteTimeout (writeWatch). The request ends as if the client had left,
// closing its backend connection, and so does the client connection,
// abortively. A tunnel's (websocket's) copy to the client is watched as one
// write (writeWatch.copy): it is cut when the client stops taking bytes
// the backend sent, never for being idle.
func (fc *fconn) checkWrite(now int64) {
	if fc.wr.watch.stalled(now, fc.rt.cfg.WriteTimeout, fc.c) {
		abortWrites(fc.c)
	}
}

// watch reads the client while its request waits on the backend: an end
// of stream or error means the client left, and the backend connection is
// closed, which cancels the backend's request and wakes the waiting
// goroutine. Bytes that arrive (a pipelined request) are kept for fc.br.
// It reads the connection itself, not fc.br, whose buffer still holds the
// request head the waiting goroutine uses.
func (fc *fconn) watch(pc *pconn, done chan struct{}) {
	defer close(done)
	buf := make([]byte, 4096)
	n, err := fc.c.Read(buf)
	// Added to what an earlier watcher read that fc.br has not taken yet.
	fc.rd.pending = append(fc.rd.pending, buf[:n]...)
	if n == 0 && err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		fc.clientGone = true
		pc.conn.Close()
	}
}

// clientReader is what fc.br reads: first bytes a watcher read early, then
// the connection.
type clientReader struct {
	c       net.Conn
	pending []byte
}

func (r *clientReader) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.c.Read(p)
}

// clientWriter is what fc.bw writes to: the connection, its writes
// watched for sweep (checkWrite) to find stalled clients.
type clientWriter struct {
	c     net.Conn
	watch writeWatch
}

func (w *clientWriter) Write(p []byte) (int, error) {
	return w.watch.write(w.c, p)
}

func (fc *fconn) serve() {
	defer func() {
		if r := recover(); r != nil {
			fc.rt.logger.Error("client connection panicked", "panic", r, "client", fc.ip)
		}
		fc.c.Close()
		fc.fs.mu.Lock()
		delete(fc.fs.conns, fc)
		fc.fs.mu.Unlock()
		if fc.br != nil {
			fc.br.Reset(nil)
			fc.rt.clientReaders.Put(fc.br)
			fc.bw.Reset(nil)
			fc.rt.clientWriters.Put(fc.bw)
		}
	}()
	fc.ip = clientIP(fc.c.RemoteAddr().String())
	fc.rd.c = fc.c
	fc.br = fc.rt.clientReaders.Get().(*bufio.Reader)
	fc.br.Reset(&fc.rd)
	fc.bw = fc.rt.clientWriters.Get().(*bufio.Writer)
	fc.bw.Reset(&fc.wr)
	for {
		if fc.fs.shutting.Load() && fc.br.Buffered() == 0 {
			return
		}
		fc.extendDeadline()
		if fc.br.Buffered() == 0 {
			runtime.Gosched() // as before reading the backend's answer
		}
		if _, err := fc.br.Peek(1); err != nil {
			return
		}
		if !fc.state.CompareAndSwap(connIdle, connActive) {
			return // closed by drain
		}
		keep := fc.serveOne()
		if !keep || !fc.state.CompareAndSwap(connActive, connIdle) {
			return
		}
	}
}

// extendDeadline keeps the client's read deadline about ClientIdleTimeout
// ahead, moving it at most once per deadlineSlack.
func (fc *fconn) extendDeadline() {
	now := time.Now().UnixNano()
	want := now + int64(fc.rt.cfg.ClientIdleTimeout)
	if want-fc.deadline > int64(deadlineSlack) {
		fc.deadline = want
		fc.c.SetReadDeadline(time.Unix(0, want))
	}
}

// fastReq is a parsed request head; its slices point into head.
type fastReq struct {
	head        []byte
	fields      int // offset of the first header line in head
	method, uri []byte
	http10      bool
	host        []byte
	length      int64 // -1 when absent
	chunked     bool
	closeAfter  bool
	keepAlive   bool // HTTP/1.0 "Connection: keep-alive"
	connUpgrade bool
	conn        connNames // header names Connection lists
	upgrade     []byte
	expect      bool
	xff         bool
	isHead      bool // the method is HEAD (kept apart: the head's bytes go once the body is read)
	id          []byte
}

// serveOne serves one request; it reports whether the connection may carry
// another.
func (fc *fconn) serveOne() bool {
	rt := fc.rt
	// The one clock reading of the request: the clock is slow on some
	// virtual machines, and waits, pools and the log all make do with it.
	start := time.Now()
	// RFC 9112 2.2: ignore empty lines before a request line.
	for {
		p, _ := fc.br.Peek(1)
		if len(p) == 0 || (p[0] != '\r' && p[0] != '\n') {
			break
		}
		fc.br.Discard(1)
		if fc.br.Buffered() == 0 {
			return true
		}
	}
	head, discard, whole := bufferedHead(fc.br)
	var err error
	if !whole {
		// Slowloris: the rest of the head must come within
		// ReadHeaderTimeout. A head that came in one piece skips the
		// timer update.
		fc.deadline = start.Add(rt.cfg.ReadHeaderTimeout).UnixNano()
		fc.c.SetReadDeadline(time.Unix(0, fc.deadline))
		head, discard, err = peekHead(fc.br)
	}
	if err != nil {
		if errors.Is(err, errHeadTooLarge) {
			fc.errorPage(http.StatusRequestHeaderFieldsTooLarge, "431 Request Header Fields Too Large\n", true)
		}
		return false
	}
	var rq fastReq
	rq.head = head
	if status, msg := parseRequestHead(&rq); status != 0 {
		fc.br.Discard(discard)
		fc.errorPage(status, msg, true)
		return false
	}
	if rt.alog != nil {
		ts := rt.alog.timestamp(start)
		fc.logBuf = appendLogPrefix(fc.logBuf[:0], ts[:], fc.ip, rq.host, rq.method, rq.uri, protoName(rq.http10))
	}
	idLen := rt.fastRequestID(&fc.id, &rq)
	id := fc.id[:idLen]

	st := fc.proxy(&rq, discard, id, start.UnixNano())

	if rt.alog != nil {
		line := appendLogSuffix(fc.logBuf, st.status, st.bytes, time.Since(start), st.upstream, id)
		fc.logBuf = line[:0]
		rt.alog.write(line)
	}
	return st.keep
}

func protoName(http10 bool) string {
	if http10 {
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

// fastRequestID puts the request id in dst: the client's if sane, else a
// new one; it returns the id's length.
func (rt *Router) fastRequestID(dst *[128]byte, rq *fastReq) int {
	if len(rq.id) > 0 && validRequestID(string(rq.id)) {
		return copy(dst[:], rq.id)
	}
	copy(dst[:8], rt.idPrefix[:])
	seq := rt.idSeq.Add(1)
	for i := 19; i >= 8; i-- {
		dst[i] = hexDigits[seq&15]
		seq >>= 4
	}
	return 20
}

// fastStatus is the outcome of one request, for the access log.
type fastStatus struct {
	status   int
	bytes    int64
	upstream string
	keep     bool
}

// proxy forwards rq to a backend of its host's app, retrying where safe.
func (fc *fconn) proxy(rq *fastReq, discard int, id []byte, now int64) (st fastStatus) {
	rt := fc.rt
	headDiscarded := false
	dropHead := func() {
		if !headDiscarded {
			fc.br.Discard(discard)
			headDiscarded = true
		}
	}
	defer dropHead()

	if rt.acmeHTTP != nil && bytes.HasPrefix(rq.uri, []byte(acmeChallengePrefix)) {
		return fc.acmeChallenge(rq)
	}
	var hb [256]byte
	host := lowerHost(hb[:0], rq.host)
	clientKeep := !rq.closeAfter && (!rq.http10 || rq.keepAlive)
	// Error pages close HTTP/1.0 connections and those with an unread body.
	pageCloses := !clientKeep || rq.hasBody() || rq.http10
	if rt.redirectHTTPS(host) {
		st.status, st.bytes = rt.writeRedirect(fc.bw, string(rq.method), host, rq.uri, pageCloses)
		fc.bw.Flush()
		st.keep = !pageCloses
		return st
	}
	r := rt.table.Load().lookupBytes(host)
	if r == nil {
		st.status = http.StatusNotFound
		st.bytes = fc.errorPage(http.StatusNotFound, "404 Not Found: no app is served at host \""+string(host)+
			"\".\nCheck the address, or attach the domain to an app: berth domains:add APP "+string(host)+"\n", pageCloses)
		st.keep = !pageCloses
		return st
	}

	hasBody := rq.hasBody()
	maxIdle := rt.cfg.IdleConnTimeout
	if hasBody && maxIdle > bodyReuseWindow {
		maxIdle = bodyReuseWindow
	}
	replayable := !hasBody && idempotent(string(rq.method))
	var skip tried
	closedEarly := false // a backend took the connection, then closed it
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			if r = rt.table.Load().lookupBytes(host); r == nil {
				break
			}
		}
		u := r.pick(rt.cfg.Policy, &skip, now)
		if u == nil {
			break
		}
		st.upstream = u.addr
		u.active.Add(1)
		pc, reused, err := u.get(context.Background(), maxIdle, now)
		if err != nil {
			u.active.Add(-1)
			u.markDown(err)
			skip.add(u)
			continue
		}
		res := fc.roundTrip(rq, pc, replayable, id, dropHead, clientKeep, now, &st)
		u.active.Add(-1)
		if res == resDone {
			return st
		}
		maxIdle = 0
		if !reused {
			skip.add(u)
			closedEarly = true
		}
	}
	if closedEarly {
		st.status = http.StatusBadGateway
		st.bytes = fc.errorPage(http.StatusBadGateway, "502 Bad Gateway: the app's instance closed the connection without responding.\n", true)
		return st
	}
	st.status = http.StatusServiceUnavailable
	st.bytes = fc.errorPage(http.StatusServiceUnavailable, "503 Service Unavailable: app \""+r.appName()+
		"\" has no healthy instance right now.\nCheck it with: berth ps:report "+r.appName()+"\n", pageCloses)
	st.keep = !pageCloses
	return st
}

func (rq *fastReq) hasBody() bool { return rq.chunked || rq.length > 0 }

// roundTrip sends rq on pc and relays the response to the client.
func (fc *fconn) roundTrip(rq *fastReq, pc *pconn, canRetry bool, id []byte, dropHead func(), clientKeep bool, now int64, st *fastStatus) result {
	reusable := false
	defer func() {
		if reusable {
			pc.u.put(pc, now)
		} else {
			pc.conn.Close()
		}
	}()
	upstreamFailed := func(msg string, err error) result {
		fc.rt.debug(msg, "backend", pc.u.addr, "err", err)
		st.status = http.StatusBadGateway
		st.bytes = fc.errorPage(http.StatusBadGateway, "502 Bad Gateway: "+msg+".\n", true)
		st.keep = false
		return resDone
	}

	writeUpstreamHead(pc.bw, rq, fc.ip, id)
	if rq.hasBody() {
		dropHead()
		if rq.expect && !rq.http10 {
			// HTTP/1.0 has no 100 Continue (RFC 9110 10.1.1).
			fc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := fc.bw.Flush(); err != nil {
				st.status = statusClientClosed
				return resDone
			}
		}
		if clientErr, err := fc.copyRequestBody(pc.bw, rq); err != nil {
			if errors.Is(err, errBadTrailer) {
				st.status, st.keep = http.StatusBadRequest, false
				st.bytes = fc.errorPage(http.StatusBadRequest, "400 Bad Request: malformed trailer section\n", true)
				return resDone
			}
			if clientErr {
				st.status = statusClientClosed
				return resDone
			}
			return upstreamFailed("the app's instance closed the connection", err)
		}
	}
	if err := pc.bw.Flush(); err != nil {
		if canRetry {
			return resRetry
		}
		return upstreamFailed("the app's instance closed the connection", err)
	}

	var rh respHead
	var head []byte
	var headDiscard int
	for {
		var err error
		fc.startWait(pc, now)
		if pc.br.Buffered() == 0 {
			// Let other requests run first: the backend's answer is then
			// usually there when this one reads, which saves a read that
			// would fail with EAGAIN, a park and a wake-up (about a fifth
			// of the CPU per request under load).
			runtime.Gosched()
		}
		head, headDiscard, err = peekHead(pc.br)
		fc.endWait()
		if err != nil {
			if fc.clientGone {
				fc.clientGone = false
				st.status, st.keep = statusClientClosed, false
				return resDone
			}
			if canRetry && errors.Is(err, errNothingRead) {
				return resRetry
			}
			return upstreamFailed("the app's instance sent no valid response", err)
		}
		rh = respHead{}
		if err := scanResponseHead(head, &rh); err != nil {
			return upstreamFailed("the app's instance sent a malformed response", err)
		}
		if rh.status >= 200 || rh.status == http.StatusSwitchingProtocols {
			break
		}
		pc.br.Discard(headDiscard) // 1xx informational responses are dropped
	}
	st.status = rh.status

	if rh.status == http.StatusSwitchingProtocols {
		if !rq.connUpgrade || len(rq.upgrade) == 0 || rh.upgrade == "" {
			return upstreamFailed("the app's instance switched protocols unasked", nil)
		}
		dropHead()
		writeClientHead(fc.bw, head, &rh, bodyNone, false)
		pc.br.Discard(headDiscard)
		fc.bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		fc.bw.WriteString(rh.upgrade)
		fc.bw.WriteString("\r\n\r\n")
		st.keep = false
		st.bytes = fc.tunnel(pc)
		return resDone
	}

	noBody := rq.isHead || rh.status == http.StatusNoContent || rh.status == http.StatusNotModified
	mode := bodyNone
	switch {
	case noBody:
	case rh.length >= 0 && !rh.chunked:
		mode = bodyLength
	case rq.http10:
		mode = bodyRaw
	default:
		mode = bodyChunked
	}
	keep := clientKeep && mode != bodyRaw
	writeClientHead(fc.bw, head, &rh, mode, !keep)
	pc.br.Discard(headDiscard)
	if keep && rq.http10 {
		fc.bw.WriteString("Connection: keep-alive\r\n")
	}
	fc.bw.WriteString("\r\n")
	st.keep = keep

	if noBody {
		// Bytes after a head without a body are the backend's fault: they
		// would be the next request's response.
		reusable = rh.keepAlive && pc.br.Buffered() == 0
		if err := fc.bw.Flush(); err != nil {
			st.status, st.keep = statusClientClosed, false
		}
		return resDone
	}
	n, rerr, werr := fc.copyResponseBody(pc.br, &rh, mode)
	st.bytes = n
	switch {
	case werr != nil:
		st.status, st.keep = statusClientClosed, false
		return resDone
	case rerr != nil:
		// The head went out: cut the client connection so it sees an
		// incomplete response.
		fc.rt.debug("backend response cut short", "backend", pc.u.addr, "err", rerr)
		st.keep = false
		return resDone
	}
	if err := fc.bw.Flush(); err != nil {
		st.status, st.keep = statusClientClosed, false
		return resDone
	}
	reusable = rh.keepAlive && (rh.chunked || rh.length >= 0) && pc.br.Buffered() == 0
	return resDone
}

// errorPage writes one of the router's plain-text pages to the client.
func (fc *fconn) errorPage(status int, msg string, closeConn bool) int64 {
	n := writeErrorPage(fc.bw, status, msg, closeConn)
	fc.bw.Flush()
	return n
}

// writeErrorPage writes a plain-text page with its head to bw, unflushed.
func writeErrorPage(bw *bufio.Writer, status int, msg string, closeConn bool) int64 {
	bw.WriteString("HTTP/1.1 ")
	var nb [20]byte
	bw.Write(strconv.AppendInt(nb[:0], int64(status), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(status))
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: ")
	bw.Write(strconv.AppendInt(nb[:0], int64(len(msg)), 10))
	if status == http.StatusServiceUnavailable {
		bw.WriteString("\r\nRetry-After: 5")
	}
	if closeConn {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	bw.WriteString(msg)
	return int64(len(msg))
}

// Body modes towards the client.
const (
	bodyNone    = iota
	bodyLength  // Content-Length passed through
	bodyChunked // re-chunked
	bodyRaw     // until the connection closes (HTTP/1.0 clients)
)

// copyRequestBody streams the request body from the client to the backend.
// clientErr tells a client failure from a backend one.
func (fc *fconn) copyRequestBody(bw *bufio.Writer, rq *fastReq) (clientErr bool, err error) {
	if rq.chunked {
		cr := httputil.NewChunkedReader(fc.br)
		bp := fc.rt.copyBufs.Get().(*[]byte)
		defer fc.rt.copyBufs.Put(bp)
		buf := *bp
		for {
			n, er := cr.Read(buf)
			if n > 0 {
				writeChunk(bw, buf[:n])
				if fc.br.Buffered() == 0 {
					if ew := bw.Flush(); ew != nil {
						return false, fmt.Errorf("send request body: %w", ew)
					}
				}
			}
			if er == io.EOF {
				break
			}
			if er != nil {
				return true, fmt.Errorf("read request body: %w", er)
			}
			fc.extendDeadline()
		}
		// The trailers are dropped: a backend reads whatever framing they
		// come in, and none of them is the router's to vouch for.
		if err := readTrailerSection(fc.br); err != nil {
			return true, err
		}
		bw.WriteString("0\r\n\r\n")
		return false, nil
	}
	remaining := rq.length
	for remaining > 0 {
		if fc.br.Buffered() == 0 {
			if ew := bw.Flush(); ew != nil {
				return false, fmt.Errorf("send request body: %w", ew)
			}
			fc.extendDeadline()
			if _, er := fc.br.Peek(1); er != nil {
				return true, fmt.Errorf("read request body: %w", er)
			}
		}
		p, _ := fc.br.Peek(int(min(int64(fc.br.Buffered()), remaining)))
		if _, ew := bw.Write(p); ew != nil {
			return false, fmt.Errorf("send request body: %w", ew)
		}
		fc.br.Discard(len(p))
		remaining -= int64(len(p))
	}
	return false, nil
}

// readTrailerSection reads a chunked request body's trailer section up to
// its blank line, each line ending in CRLF and a valid field, or fails with
// errBadTrailer.
func readTrailerSection(br *bufio.Reader) error {
	for i := 0; ; i++ {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return fmt.Errorf("read request trailers: line over %d bytes: %w", br.Size(), errBadTrailer)
		case err != nil:
			return fmt.Errorf("read request trailers: %w", err)
		}
		field, crlf := bytes.CutSuffix(line, []byte("\r\n"))
		if len(field) == 0 && crlf {
			return nil
		}
		if i == maxHeaderFields {
			return fmt.Errorf("read request trailers: over %d: %w", maxHeaderFields, errBadTrailer)
		}
		if _, _, _, _, ok, _ := nextField(field, 0); !crlf || !ok || bytes.IndexByte(field, '\r') >= 0 {
			return fmt.Errorf("read request trailer %q: %w", field, errBadTrailer)
		}
	}
}

// copyResponseBody relays the response body, flushing to the client
// whenever the backend has nothing more buffered.
func (fc *fconn) copyResponseBody(ubr *bufio.Reader, rh *respHead, mode int) (n int64, rerr, werr error) {
	bw := fc.bw
	if rh.length >= 0 && !rh.chunked {
		remaining := rh.length
		for remaining > 0 {
			if ubr.Buffered() == 0 {
				if werr = bw.Flush(); werr != nil {
					return n, nil, werr
				}
				if _, rerr = ubr.Peek(1); rerr != nil {
					return n, rerr, nil
				}
			}
			p, _ := ubr.Peek(int(min(int64(ubr.Buffered()), remaining)))
			w, err := bw.Write(p)
			n += int64(w)
			if err != nil {
				return n, nil, err
			}
			ubr.Discard(len(p))
			remaining -= int64(len(p))
		}
		return n, nil, nil
	}

	var src io.Reader = ubr
	if rh.chunked {
		src = httputil.NewChunkedReader(ubr)
	}
	bp := fc.rt.copyBufs.Get().(*[]byte)
	defer fc.rt.copyBufs.Put(bp)
	buf := *bp
	for {
		nr, er := src.Read(buf)
		if nr > 0 {
			if mode == bodyChunked {
				writeChunk(bw, buf[:nr])
			} else {
				bw.Write(buf[:nr])
			}
			n += int64(nr)
			if ubr.Buffered() == 0 {
				if werr = bw.Flush(); werr != nil {
					return n, nil, werr
				}
			}
		}
		if er == io.EOF {
			break
		}
		if er != nil {
			return n, er, nil
		}
	}
	if mode == bodyChunked {
		bw.WriteString("0\r\n")
		if !rh.chunked {
			bw.WriteString("\r\n")
			return n, nil, nil
		}
	}
	if !rh.chunked {
		return n, nil, nil
	}
	// The backend's trailers, then the blank line: read whatever the
	// client takes, or they would be left for the connection's next
	// response. Passed on only in a chunked response.
	for i := 0; ; i++ {
		line, er := ubr.ReadSlice('\n')
		if er != nil || i > 100 {
			return n, fmt.Errorf("read trailers: %w", er), nil
		}
		if mode == bodyChunked {
			bw.Write(line)
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return n, nil, nil
		}
	}
}

func writeChunk(bw *bufio.Writer, p []byte) {
	var nb [16]byte
	bw.Write(strconv.AppendInt(nb[:0], int64(len(p)), 16))
	bw.WriteString("\r\n")
	bw.Write(p)
	bw.WriteString("\r\n")
}

// tunnel relays bytes both ways after a protocol switch (websockets) until
// either side closes; it returns the bytes sent to the client.
func (fc *fconn) tunnel(pc *pconn) int64 {
	rt := fc.rt
	fc.state.Store(connHijacked)
	rt.trackHijacked(fc.c, true)
	defer rt.trackHijacked(fc.c, false)
	if err := fc.bw.Flush(); err != nil {
		return 0
	}
	fc.c.SetDeadline(time.Time{})
	pc.conn.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(pc.conn, fc.br) //nolint:errcheck // ends the tunnel either way
		if tc, ok := pc.conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	n, _ := fc.wr.watch.copy(fc.c, pc.br)
	fc.c.Close()
	pc.conn.Close()
	<-done
	return n
}

// acmeChallenge answers an ACME http-01 challenge through autocert's handler.
func (fc *fconn) acmeChallenge(rq *fastReq) fastStatus {
	raw := append(append([]byte(nil), rq.head...), "\r\n"...)
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return fastStatus{status: http.StatusBadRequest, bytes: fc.errorPage(http.StatusBadRequest, "400 Bad Request\n", true)}
	}
	req.RemoteAddr = fc.c.RemoteAddr().String()
	rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
	fc.rt.acmeHTTP.ServeHTTP(rec, req)
	bw := fc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(rec.status))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(rec.status))
	bw.WriteString("\r\n")
	rec.header.Set("Content-Length", strconv.Itoa(rec.body.Len()))
	rec.header.Set("Connection", "close")
	rec.header.Write(bw)
	bw.WriteString("\r\n")
	bw.Write(rec.body.Bytes())
	bw.Flush()
	return fastStatus{status: rec.status, bytes: int64(rec.body.Len())}
}

// bufferedResponse is a ResponseWriter that keeps the response in memory,
// for the few requests the fast path hands to an http.Handler.
type bufferedResponse struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if !b.wrote {
		b.status, b.wrote = code, true
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.wrote = true
	return b.body.Write(p)
}
