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
// have been slow to answer for a second, so fast requests pay nothing.

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
		fc := &fconn{fs: fs, rt: fs.rt, c: c}
		fs.mu.Lock()
		fs.conns[fc] = struct{}{}
		fs.mu.Unlock()
		go fc.serve()
	}
}

// shutdown stops accepting, closes idle connections as they become idle, and
// waits for the rest until ctx ends; then it closes them all.
func (fs *fastServer) shutdown(done <-chan struct{}) bool {
	fs.shutting.Store(true)
	fs.ln.Close()
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
		if n == 0 {
			return true
		}
		select {
		case <-done:
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
func (fc *fconn) startWait(pc *pconn) {
	now := time.Now().UnixNano()
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
		cutoff := time.Now().Add(-slowResponse).UnixNano()
		fs.mu.Lock()
		for fc := range fs.conns {
			fc.watchMu.Lock()
			if fc.waitState == waitWaiting && fc.waitStart < cutoff {
				fc.waitState = waitWatched
				fc.watchDone = make(chan struct{})
				go fc.watch(fc.waitPC, fc.watchDone)
			}
			fc.watchMu.Unlock()
		}
		fs.mu.Unlock()
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
	fc.rd.pending = buf[:n]
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
	fc.bw.Reset(fc.c)
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
	connTokens  bool // Connection names other headers
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
	var start time.Time
	if rt.alog != nil {
		start = time.Now()
	}
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
	head, discard, err := peekHead(fc.br)
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
	idLen := fc.requestID(&rq)
	id := fc.id[:idLen]

	st := fc.proxy(&rq, discard, id)

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

// requestID puts the request id in fc.id: the client's if sane, else a new one.
func (fc *fconn) requestID(rq *fastReq) int {
	if len(rq.id) > 0 && validRequestID(string(rq.id)) {
		return copy(fc.id[:], rq.id)
	}
	copy(fc.id[:8], fc.rt.idPrefix[:])
	seq := fc.rt.idSeq.Add(1)
	for i := 19; i >= 8; i-- {
		fc.id[i] = hexDigits[seq&15]
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
func (fc *fconn) proxy(rq *fastReq, discard int, id []byte) (st fastStatus) {
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
	r := rt.table.Load().lookupBytes(host)
	clientKeep := !rq.closeAfter && (!rq.http10 || rq.keepAlive)
	// Error pages close HTTP/1.0 connections and those with an unread body.
	pageCloses := !clientKeep || rq.hasBody() || rq.http10
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
		u := r.pick(rt.cfg.Policy, &skip)
		if u == nil {
			break
		}
		st.upstream = u.addr
		u.active.Add(1)
		pc, reused, err := u.get(context.Background(), maxIdle)
		if err != nil {
			u.active.Add(-1)
			u.markDown(err)
			skip.add(u)
			continue
		}
		res := fc.roundTrip(rq, pc, replayable, id, dropHead, clientKeep, &st)
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
func (fc *fconn) roundTrip(rq *fastReq, pc *pconn, canRetry bool, id []byte, dropHead func(), clientKeep bool, st *fastStatus) result {
	reusable := false
	defer func() {
		if reusable {
			pc.u.put(pc)
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
		if rq.expect {
			fc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := fc.bw.Flush(); err != nil {
				st.status = statusClientClosed
				return resDone
			}
		}
		if clientErr, err := fc.copyRequestBody(pc.bw, rq); err != nil {
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
		fc.startWait(pc)
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
		reusable = rh.keepAlive
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
	reusable = rh.keepAlive && (rh.chunked || rh.length >= 0)
	return resDone
}

// errorPage writes one of the router's plain-text pages to the client.
func (fc *fconn) errorPage(status int, msg string, closeConn bool) int64 {
	bw := fc.bw
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
	bw.Flush()
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
		bw.WriteString("0\r\n")
		// Trailers, then the blank line, pass through as they are.
		for i := 0; ; i++ {
			line, er := fc.br.ReadSlice('\n')
			if er != nil || i > 100 {
				return true, fmt.Errorf("read request trailers: %w", er)
			}
			bw.Write(line)
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				return false, nil
			}
		}
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
	if mode != bodyChunked {
		return n, nil, nil
	}
	bw.WriteString("0\r\n")
	if !rh.chunked {
		bw.WriteString("\r\n")
		return n, nil, nil
	}
	// The backend's trailers, then the blank line.
	for i := 0; ; i++ {
		line, er := ubr.ReadSlice('\n')
		if er != nil || i > 100 {
			return n, fmt.Errorf("read trailers: %w", er), nil
		}
		bw.Write(line)
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
	n, _ := io.Copy(fc.c, pc.br)
	fc.c.Close()
	pc.conn.Close()
	<-done
	return n
}

// Header classes the proxy treats specially.
const (
	hdrOther = iota
	hdrHost
	hdrContentLength
	hdrTransferEncoding
	hdrConnection
	hdrUpgrade
	hdrExpect
	hdrHopByHop // Keep-Alive, Proxy-Connection, Te, Trailer, Proxy-Authorization, Proxy-Authenticate
	hdrXFF
	hdrXForwarded // X-Forwarded-Proto, X-Forwarded-Host: replaced
	hdrRequestID
	hdrTrailer
)

// classify names a header's class without allocating.
func classify(name []byte) int {
	switch len(name) {
	case 2:
		if eqFold(name, "te") {
			return hdrHopByHop
		}
	case 4:
		if eqFold(name, "host") {
			return hdrHost
		}
	case 6:
		if eqFold(name, "expect") {
			return hdrExpect
		}
	case 7:
		switch {
		case eqFold(name, "upgrade"):
			return hdrUpgrade
		case eqFold(name, "trailer"):
			return hdrTrailer
		}
	case 10:
		switch {
		case eqFold(name, "connection"):
			return hdrConnection
		case eqFold(name, "keep-alive"):
			return hdrHopByHop
		}
	case 12:
		if eqFold(name, "x-request-id") {
			return hdrRequestID
		}
	case 14:
		if eqFold(name, "content-length") {
			return hdrContentLength
		}
	case 15:
		if eqFold(name, "x-forwarded-for") {
			return hdrXFF
		}
	case 16:
		if eqFold(name, "x-forwarded-host") {
			return hdrXForwarded
		}
		if eqFold(name, "proxy-connection") {
			return hdrHopByHop
		}
	case 17:
		switch {
		case eqFold(name, "transfer-encoding"):
			return hdrTransferEncoding
		case eqFold(name, "x-forwarded-proto"):
			return hdrXForwarded
		}
	case 18:
		if eqFold(name, "proxy-authenticate") {
			return hdrHopByHop
		}
	case 19:
		if eqFold(name, "proxy-authorization") {
			return hdrHopByHop
		}
	}
	return hdrOther
}

// eqFold compares an ASCII name with a lower-case constant.
func eqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// nextField returns the header line at off in head (without its line end),
// its name and trimmed value, and the offset of the next line; ok is false
// at the end or on a malformed line (bad is then true).
func nextField(head []byte, off int) (line, name, value []byte, next int, ok, bad bool) {
	if off >= len(head) {
		return nil, nil, nil, off, false, false
	}
	i := bytes.IndexByte(head[off:], '\n')
	if i < 0 {
		line, next = head[off:], len(head)
	} else {
		line, next = head[off:off+i], off+i+1
	}
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if len(line) == 0 {
		return nil, nil, nil, next, false, false
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
		return line, nil, nil, next, false, true
	}
	name = line[:colon]
	for _, c := range name {
		if !validHeaderNameByte(c) {
			return line, nil, nil, next, false, true
		}
	}
	value = trimOWS(line[colon+1:])
	for _, c := range value {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return line, nil, nil, next, false, true
		}
	}
	return line, name, value, next, true, false
}

// parseRequestHead parses rq.head; on a bad request it returns the status and
// page to send.
func parseRequestHead(rq *fastReq) (int, string) {
	head := rq.head
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		i = len(head)
	}
	line := bytes.TrimSuffix(head[:i], []byte{'\r'})
	rq.fields = min(i+1, len(head))
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return http.StatusBadRequest, "400 Bad Request: malformed request line\n"
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return http.StatusBadRequest, "400 Bad Request: malformed request line\n"
	}
	rq.method, rq.uri = line[:sp1], rest[:sp2]
	rq.isHead = string(rq.method) == http.MethodHead
	proto := rest[sp2+1:]
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		rq.http10 = true
	default:
		return http.StatusHTTPVersionNotSupported, "505 HTTP Version Not Supported: this router speaks HTTP/1.0 and HTTP/1.1 here\n"
	}
	for _, c := range rq.method {
		if !validHeaderNameByte(c) {
			return http.StatusBadRequest, "400 Bad Request: malformed method\n"
		}
	}
	for _, c := range rq.uri {
		if c <= ' ' || c == 0x7f {
			return http.StatusBadRequest, "400 Bad Request: malformed request target\n"
		}
	}
	rq.length = -1
	hosts := 0
	for off := rq.fields; ; {
		_, name, value, next, ok, bad := nextField(head, off)
		if bad {
			return http.StatusBadRequest, "400 Bad Request: malformed header line\n"
		}
		if !ok {
			break
		}
		off = next
		switch classify(name) {
		case hdrHost:
			hosts++
			rq.host = value
		case hdrContentLength:
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (rq.length >= 0 && n != rq.length) {
				return http.StatusBadRequest, "400 Bad Request: bad Content-Length\n"
			}
			rq.length = n
		case hdrTransferEncoding:
			if !eqFold(value, "chunked") || rq.chunked {
				return http.StatusNotImplemented, "501 Not Implemented: only the chunked transfer coding is supported\n"
			}
			rq.chunked = true
		case hdrConnection:
			for t := range bytes.SplitSeq(value, []byte{','}) {
				t = bytes.TrimSpace(t)
				switch {
				case eqFold(t, "close"):
					rq.closeAfter = true
				case eqFold(t, "keep-alive"):
					rq.keepAlive = true
				case eqFold(t, "upgrade"):
					rq.connUpgrade = true
				case len(t) > 0:
					rq.connTokens = true
				}
			}
		case hdrUpgrade:
			rq.upgrade = value
		case hdrExpect:
			if eqFold(value, "100-continue") {
				rq.expect = true
			}
		case hdrXFF:
			rq.xff = true
		case hdrRequestID:
			rq.id = value
		}
	}
	if hosts > 1 || (hosts == 0 && !rq.http10) {
		return http.StatusBadRequest, "400 Bad Request: exactly one Host header is required\n"
	}
	if rq.chunked && rq.length >= 0 {
		// Both framings at once is how requests get smuggled.
		return http.StatusBadRequest, "400 Bad Request: both Content-Length and Transfer-Encoding\n"
	}
	if rq.http10 && rq.chunked {
		return http.StatusBadRequest, "400 Bad Request: chunked body in an HTTP/1.0 request\n"
	}
	// Absolute-form targets carry the host themselves.
	if len(rq.uri) > 0 && rq.uri[0] != '/' && string(rq.uri) != "*" {
		if rest, ok := bytes.CutPrefix(rq.uri, []byte("http://")); ok {
			j := bytes.IndexByte(rest, '/')
			if j < 0 {
				rq.host, rq.uri = rest, []byte("/")
			} else {
				rq.host, rq.uri = rest[:j], rest[j:]
			}
		} else {
			return http.StatusBadRequest, "400 Bad Request: unsupported request target\n"
		}
	}
	return 0, ""
}

// connectionNames reports whether a Connection header of the request names
// the header called name.
func connectionNames(rq *fastReq, name []byte) bool {
	for off := rq.fields; ; {
		_, n, v, next, ok, _ := nextField(rq.head, off)
		if !ok {
			return false
		}
		off = next
		if classify(n) != hdrConnection {
			continue
		}
		for t := range bytes.SplitSeq(v, []byte{','}) {
			if bytes.EqualFold(bytes.TrimSpace(t), name) {
				return true
			}
		}
	}
}

// writeUpstreamHead writes the request head to the backend.
func writeUpstreamHead(bw *bufio.Writer, rq *fastReq, ip string, id []byte) {
	bw.Write(rq.method)
	bw.WriteByte(' ')
	bw.Write(rq.uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.Write(rq.host)
	bw.WriteString("\r\n")
	for off := rq.fields; ; {
		line, name, _, next, ok, _ := nextField(rq.head, off)
		if !ok {
			break
		}
		off = next
		if classify(name) != hdrOther || (rq.connTokens && connectionNames(rq, name)) {
			continue
		}
		bw.Write(line)
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-For: ")
	if rq.xff {
		for off := rq.fields; ; {
			_, name, value, next, ok, _ := nextField(rq.head, off)
			if !ok {
				break
			}
			off = next
			if classify(name) == hdrXFF {
				bw.Write(value)
				bw.WriteString(", ")
			}
		}
	}
	bw.WriteString(ip)
	bw.WriteString("\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ")
	bw.Write(rq.host)
	bw.WriteString("\r\nX-Request-Id: ")
	bw.Write(id)
	bw.WriteString("\r\n")
	if rq.connUpgrade && len(rq.upgrade) > 0 {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.Write(rq.upgrade)
		bw.WriteString("\r\n")
	}
	switch {
	case rq.chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case rq.length >= 0:
		var nb [20]byte
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(nb[:0], rq.length, 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
}

// scanResponseHead validates a backend's response head and reads its
// framing into rh, without allocating on the common path.
func scanResponseHead(head []byte, rh *respHead) error {
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		i = len(head)
	}
	line := bytes.TrimSuffix(head[:i], []byte{'\r'})
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return fmt.Errorf("parse status line %q: %w", line, ErrBadUpstreamResponse)
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return fmt.Errorf("parse status code %q: %w", line[9:12], ErrBadUpstreamResponse)
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return fmt.Errorf("parse status code %d: %w", code, ErrBadUpstreamResponse)
	}
	rh.status, rh.length = code, -1
	rh.statusLine = line[9:]
	rh.keepAlive = line[7] != '0'
	rh.fields = min(i+1, len(head))
	closeConn := false
	for off := rh.fields; ; {
		_, name, value, next, ok, bad := nextField(head, off)
		if bad {
			return fmt.Errorf("parse header: %w", ErrBadUpstreamResponse)
		}
		if !ok {
			break
		}
		off = next
		switch classify(name) {
		case hdrConnection:
			for t := range bytes.SplitSeq(value, []byte{','}) {
				t = bytes.TrimSpace(t)
				switch {
				case eqFold(t, "close"):
					closeConn = true
				case eqFold(t, "keep-alive"):
					rh.keepAlive = true
				case len(t) > 0 && !eqFold(t, "upgrade"):
					rh.connTokens = true
				}
			}
		case hdrUpgrade:
			rh.upgrade = string(value)
		case hdrTransferEncoding:
			if eqFold(value, "chunked") {
				rh.chunked = true
			} else if !eqFold(value, "identity") {
				closeConn = true
			}
		case hdrContentLength:
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (rh.length >= 0 && n != rh.length) {
				return fmt.Errorf("parse content-length %q: %w", value, ErrBadUpstreamResponse)
			}
			rh.length = n
		}
	}
	if rh.chunked {
		rh.length = -1
	}
	if closeConn {
		rh.keepAlive = false
	}
	return nil
}

// writeClientHead writes the response head to the client (without the
// final blank line): hop-by-hop headers dropped, framing for mode.
func writeClientHead(bw *bufio.Writer, head []byte, rh *respHead, mode int, closeConn bool) {
	bw.WriteString("HTTP/1.1 ")
	bw.Write(rh.statusLine)
	bw.WriteString("\r\n")
	sawLength := false
	for off := rh.fields; ; {
		line, name, _, next, ok, _ := nextField(head, off)
		if !ok {
			break
		}
		off = next
		switch classify(name) {
		case hdrOther, hdrRequestID, hdrXFF, hdrXForwarded, hdrHost, hdrExpect:
			if rh.connTokens && responseConnectionNames(head, rh, name) {
				continue
			}
		case hdrTrailer:
			if mode != bodyChunked || !rh.chunked {
				continue
			}
		case hdrContentLength:
			if mode != bodyLength && mode != bodyNone || sawLength || rh.chunked {
				continue
			}
			sawLength = true
		default:
			continue
		}
		bw.Write(line)
		bw.WriteString("\r\n")
	}
	if mode == bodyChunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if closeConn {
		bw.WriteString("Connection: close\r\n")
	}
}

func responseConnectionNames(head []byte, rh *respHead, name []byte) bool {
	return connectionNames(&fastReq{head: head, fields: rh.fields}, name)
}

// lookupBytes finds the route for a lower-cased host without allocating.
func (c *compiled) lookupBytes(host []byte) *route {
	if r := c.hosts[string(host)]; r != nil {
		return r
	}
	if len(c.wild) > 0 {
		if i := bytes.IndexByte(host, '.'); i > 0 {
			return c.wild[string(host[i+1:])]
		}
	}
	return nil
}

// lowerHost appends host, lower-cased, without port or trailing dot, to dst.
func lowerHost(dst, host []byte) []byte {
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && !bytes.HasSuffix(host, []byte("]")) {
		host = host[:i]
	}
	host = bytes.TrimSuffix(host, []byte{'.'})
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
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

// trimOWS trims spaces and tabs around a field value.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
