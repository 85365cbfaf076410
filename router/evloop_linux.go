package router

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the plain-HTTP listener's event loops: one per P but one,
// each
// owning its client connections and its pooled backend connections as raw
// non-blocking sockets on its own edge-triggered epoll set, as nginx's
// workers do. A goroutine per connection (fast.go) pays, per request, a
// read that fails with EAGAIN, a park and a wake-up on both the client and
// the backend side, and the scheduler's hand-offs between threads; a loop
// reads only when epoll reported data and the last read did not drain the
// socket, and finds many ready connections per epoll_wait.
//
// The loops serve the common keep-alive case: an HTTP/1.1 request without
// a body that may be replayed, to a backend at an IP address. Everything
// else (bodies, upgrades, HTTP/1.0, ACME challenges, error pages for
// unknown hosts and apps without a healthy instance, heads that do not fit
// the buffer, malformed requests) is handed to the goroutine path with the
// bytes already read, before anything was sent on the client's behalf.

const (
	loopReadBuf = 8 << 10
	// loopTick is how often a loop checks timeouts and stale pooled
	// connections: a coarse sweep instead of a timer per request.
	loopTick = 250 * time.Millisecond
)

// Client connection states.
const (
	clIdle    = iota // reading a request head
	clWaiting        // a request is with a backend
)

// Backend response body modes of the loop, beyond those of fast.go.
const (
	bodyPassChunked = iota + 100 // chunked, passed through as it is
	bodyStream                   // until the backend closes, chunked on the way
)

// Loop states, in the order shutdown moves through them.
const (
	loopServe = iota
	loopDrain // close idle clients, close the others after their response
	loopClose // close every client
	loopExit
)

// evLoops is the set of event loops of one plain-HTTP listener.
type evLoops struct {
	fs    *fastServer
	loops []*evLoop
	next  atomic.Uint32
	wg    sync.WaitGroup
}

// evLoop is one event loop.
type evLoop struct {
	ls    *evLoops
	rt    *Router
	ep    int
	wake  int // eventfd: new connections and state changes
	state atomic.Int32
	live  atomic.Int64 // client connections owned

	mu       sync.Mutex
	incoming []*lconn

	conns     []*lconn // by fd
	gen       uint32
	pools     map[*upstream][]*lconn
	bw        *bufio.Writer // formats heads into an outBuf
	events    []unix.EpollEvent
	now       int64
	lastSweep int64
}

// outBuf collects bytes to write; it is what the loop's bufio.Writer
// formats into.
type outBuf []byte

func (o *outBuf) Write(p []byte) (int, error) {
	*o = append(*o, p...)
	return len(p), nil
}

// lconn is a client or backend connection of a loop.
type lconn struct {
	fd      int
	gen     uint32
	client  bool
	in      []byte
	off, n  int  // unread bytes are in[off:n]
	drained bool // the socket had nothing more at the last read: wait for an edge
	// rdhup: the peer's end of stream is queued, so a short read does not
	// mean drained: read on until the end of stream shows.
	rdhup  bool
	eof    bool
	out    outBuf
	outOff int
	// stallAt is when out last moved: the socket took bytes of it, or
	// refused the first, or sweep saw the send queue (sendq) change.
	stallAt int64
	sendq   int
	peer    *lconn

	// Client side.
	ip         string
	state      int
	activeAt   int64 // accept or end of the last response
	headAt     int64 // first byte of the head being read; 0 when none
	closeAfter bool
	reqLen     int    // bytes of in the request in flight takes
	upReq      outBuf // the request as sent to the backend, for a retry
	isHead     bool
	keep       bool
	retried    bool
	start      int64
	status     int
	bytes      int64
	upAddr     string
	logBuf     []byte
	id         [128]byte
	idLen      int

	// Backend side.
	u          *upstream
	reused     bool
	connecting bool
	connectAt  int64
	idleAt     int64
	gotAny     bool
	headDone   bool
	mode       int
	remaining  int64
	chunks     chunkScan
	keepAlive  bool
}

func (c *lconn) outPending() bool { return c.outOff < len(c.out) }

// newEvLoops starts the loops.
func newEvLoops(fs *fastServer) (*evLoops, error) {
	ls := &evLoops{fs: fs}
	// One P is left to the rest of the process: with every P held by a
	// loop blocked in epoll_wait, the scheduler hands Ps between threads
	// (futex wake-ups, sysmon at full rate), which cost more per request
	// on two cores than a loop saves.
	for range max(1, runtime.GOMAXPROCS(0)-1) {
		l, err := newEvLoop(ls)
		if err != nil {
			ls.stop()
			return nil, err
		}
		ls.loops = append(ls.loops, l)
	}
	for _, l := range ls.loops {
		ls.wg.Add(1)
		go l.run()
	}
	return ls, nil
}

func newEvLoop(ls *evLoops) (*evLoop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("create eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, fmt.Errorf("watch eventfd: %w", err)
	}
	return &evLoop{
		ls: ls, rt: ls.fs.rt, ep: ep, wake: wake,
		pools:  make(map[*upstream][]*lconn),
		bw:     bufio.NewWriterSize(nil, 4<<10),
		events: make([]unix.EpollEvent, 256),
	}, nil
}

// adopt hands a new client connection to a loop; false leaves it to the
// caller.
func (ls *evLoops) adopt(c net.Conn) bool {
	if ls == nil {
		return false
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	rc.Control(func(s uintptr) { //nolint:errcheck // fd stays -1 on failure
		fd, _ = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if fd < 0 {
		return false
	}
	ip := clientIP(c.RemoteAddr().String())
	// The duplicate keeps the socket, already non-blocking, open.
	c.Close()
	l := ls.loops[ls.next.Add(1)%uint32(len(ls.loops))]
	l.live.Add(1)
	l.mu.Lock()
	l.incoming = append(l.incoming, &lconn{fd: fd, client: true, ip: ip})
	l.mu.Unlock()
	l.poke()
	return true
}

// setState moves every loop to state s (see loopServe and the others).
func (ls *evLoops) setState(s int32) {
	if ls == nil {
		return
	}
	for _, l := range ls.loops {
		l.state.Store(s)
		l.poke()
	}
}

// live counts the loops' client connections.
func (ls *evLoops) live() int64 {
	if ls == nil {
		return 0
	}
	var n int64
	for _, l := range ls.loops {
		n += l.live.Load()
	}
	return n
}

// stop ends the loops, closing all their connections, and waits for them.
func (ls *evLoops) stop() {
	if ls == nil {
		return
	}
	ls.setState(loopExit)
	ls.wg.Wait()
}

func (l *evLoop) poke() {
	one := [8]byte{1}
	unix.Write(l.wake, one[:]) //nolint:errcheck // a full counter wakes the loop too
}

func (l *evLoop) run() {
	runtime.LockOSThread()
	defer l.ls.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			l.rt.logger.Error("event loop panicked; its connections are closed", "panic", r)
		}
		l.closeAll()
		unix.Close(l.ep)
		unix.Close(l.wake)
	}()
	for {
		// Poll without blocking first: when busy there are events, and
		// the scheduler need not hand this thread's P around.
		n, err := epollPoll(l.ep, l.events)
		if n <= 0 && err == nil {
			n, err = unix.EpollWait(l.ep, l.events, int(loopTick/time.Millisecond))
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			l.rt.logger.Error("event loop wait failed", "err", err)
			return
		}
		l.now = time.Now().UnixNano()
		for i := 0; i < n; i++ {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.wake {
				var b [8]byte
				unix.Read(l.wake, b[:]) //nolint:errcheck // only resets the counter
				l.takeIncoming()
				continue
			}
			if fd >= len(l.conns) {
				continue
			}
			c := l.conns[fd]
			if c == nil || c.gen != uint32(ev.Pad) {
				continue // closed earlier in this batch
			}
			if c.client {
				l.clientEvent(c, ev.Events)
			} else {
				l.upEvent(c, ev.Events)
			}
		}
		switch l.state.Load() {
		case loopExit:
			return
		case loopClose:
			l.closeAll()
		}
		if l.now-l.lastSweep >= int64(loopTick) {
			l.lastSweep = l.now
			l.sweep()
		}
	}
}

// register adds c to the loop and its epoll set.
func (l *evLoop) register(c *lconn) error {
	l.gen++
	c.gen = l.gen
	for c.fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*lconn, len(l.conns)+64)...)
	}
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd:     int32(c.fd),
		Pad:    int32(c.gen),
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		return fmt.Errorf("watch connection: %w", err)
	}
	l.conns[c.fd] = c
	return nil
}

func (l *evLoop) takeIncoming() {
	l.mu.Lock()
	in := l.incoming
	l.incoming = nil
	l.mu.Unlock()
	for _, c := range in {
		c.in = make([]byte, loopReadBuf)
		c.activeAt = l.now
		if l.state.Load() != loopServe {
			unix.Close(c.fd)
			l.live.Add(-1)
			continue
		}
		if err := l.register(c); err != nil {
			l.rt.debug("event loop dropped a connection", "err", err)
			unix.Close(c.fd)
			l.live.Add(-1)
			continue
		}
		l.readClient(c)
	}
}

// closeAll closes every connection of the loop.
func (l *evLoop) closeAll() {
	for _, c := range l.conns {
		if c == nil {
			continue
		}
		if c.client {
			l.clientGone(c)
		} else {
			l.closeUp(c)
		}
	}
	for u, idle := range l.pools {
		for _, c := range idle {
			l.closeUp(c)
		}
		delete(l.pools, u)
	}
}

// sweep enforces the client timeouts and the backend pools' limits.
func (l *evLoop) sweep() {
	draining := l.state.Load() == loopDrain
	for _, c := range l.conns {
		switch {
		case c == nil:
		case !c.client:
			if c.connecting && l.now-c.connectAt > int64(l.rt.cfg.DialTimeout) {
				l.connectFailed(c, os.ErrDeadlineExceeded)
			}
		case c.outPending():
			// A client that stopped reading, or vanished: closing it
			// closes the backend connection of a response still coming.
			// One that reads slowly empties the send queue meanwhile.
			if q := unsent(c.fd); q != c.sendq {
				c.sendq, c.stallAt = q, l.now
			} else if l.now-c.stallAt > int64(l.rt.cfg.WriteTimeout) {
				// Abortive (SO_LINGER 0): the kernel drops the bytes
				// the client has not taken instead of holding them.
				unix.SetsockoptLinger(c.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}) //nolint:errcheck // the close is then only graceful
				l.clientGone(c)
			}
		case c.state != clIdle:
		case c.n > c.off:
			// Slowloris: a head must arrive within ReadHeaderTimeout.
			if c.headAt != 0 && l.now-c.headAt > int64(l.rt.cfg.ReadHeaderTimeout) {
				l.closeClient(c)
			}
		case draining || l.now-c.activeAt > int64(l.rt.cfg.ClientIdleTimeout):
			l.closeClient(c)
		}
	}
	for u, idle := range l.pools {
		keep := idle[:0]
		for _, c := range idle {
			if u.retired.Load() || l.now-c.idleAt > int64(l.rt.cfg.IdleConnTimeout) {
				l.closeUp(c)
				continue
			}
			keep = append(keep, c)
		}
		clear(idle[len(keep):])
		if len(keep) == 0 {
			delete(l.pools, u)
		} else {
			l.pools[u] = keep
		}
	}
}

func (l *evLoop) clientEvent(c *lconn, ev uint32) {
	if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 && c.outPending() {
		if !l.flushClient(c) {
			return
		}
		if c.outPending() {
			return
		}
		if c.peer != nil {
			l.readUp(c.peer)
		} else {
			l.afterResponse(c)
		}
		if l.conns[c.fd] != c || c.gen == 0 {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.drained = false
		c.rdhup = c.rdhup || ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
		l.readClient(c)
	}
}

// readClient reads what the client sent and serves complete requests.
func (l *evLoop) readClient(c *lconn) {
	if c.off > 0 && c.off == c.n {
		c.off, c.n = 0, 0
	}
	for !c.drained && !c.eof && c.n < len(c.in) {
		if c.off > 0 {
			c.n = copy(c.in, c.in[c.off:c.n])
			c.off = 0
		}
		space := len(c.in) - c.n
		m, err := rawRead(c.fd, c.in[c.n:])
		switch {
		case err == unix.EAGAIN:
			c.drained = true
		case err != nil:
			l.clientGone(c)
			return
		case m == 0:
			c.eof = true
		default:
			if c.n == 0 && c.state == clIdle {
				c.headAt = l.now
			}
			c.n += m
			c.drained = m < space && !c.rdhup
		}
	}
	if c.state == clIdle {
		l.serveBuffered(c)
	} else if c.eof {
		// Gone while its backend works: as nginx, stop the request.
		l.clientGone(c)
	}
}

// serveBuffered starts the request at the front of c's buffer, if whole.
func (l *evLoop) serveBuffered(c *lconn) {
	// RFC 9112 2.2: ignore empty lines before a request line.
	for c.off < c.n && (c.in[c.off] == '\r' || c.in[c.off] == '\n') {
		c.off++
	}
	if c.off == c.n {
		c.off, c.n, c.headAt = 0, 0, 0
		if c.eof || l.state.Load() != loopServe {
			l.closeClient(c)
		}
		return
	}
	if c.headAt == 0 {
		c.headAt = l.now
	}
	if c.off > 0 {
		c.n = copy(c.in, c.in[c.off:c.n])
		c.off = 0
	}
	end, next := headEnd(c.in[:c.n])
	switch {
	case end >= 0:
		l.startRequest(c, end, next)
	case c.eof:
		l.closeClient(c)
	case c.n == len(c.in):
		l.handoff(c) // a head over the buffer: fast.go reads long heads
	case !c.drained:
		l.readClient(c)
	}
}

// startRequest sends the request whose head is c.in[:end] to a backend, or
// hands the connection to the goroutine path.
func (l *evLoop) startRequest(c *lconn, end, next int) {
	rt := l.rt
	rq := fastReq{head: c.in[:end]}
	if status, _ := parseRequestHead(&rq); status != 0 ||
		rq.hasBody() || rq.http10 || rq.expect || rq.connUpgrade || len(rq.upgrade) > 0 ||
		!idempotent(string(rq.method)) ||
		rt.acmeHTTP != nil && bytes.HasPrefix(rq.uri, []byte(acmeChallengePrefix)) {
		l.handoff(c)
		return
	}
	var hb [256]byte
	host := lowerHost(hb[:0], rq.host)
	if rt.redirectHTTPS(host) {
		l.handoff(c)
		return
	}
	r := rt.table.Load().lookupBytes(host)
	if r == nil {
		l.handoff(c)
		return
	}
	u := r.pick(rt.cfg.Policy, &tried{}, l.now)
	if u == nil || !u.apOK {
		l.handoff(c)
		return
	}
	c.start, c.status, c.bytes, c.upAddr, c.retried = l.now, 0, 0, u.addr, false
	c.isHead, c.keep = rq.isHead, !rq.closeAfter
	c.idLen = rt.fastRequestID(&c.id, &rq)
	if rt.alog != nil {
		ts := rt.alog.timestamp(time.Unix(0, c.start))
		c.logBuf = appendLogPrefix(c.logBuf[:0], ts[:], c.ip, rq.host, rq.method, rq.uri, "HTTP/1.1")
	}
	c.upReq = c.upReq[:0]
	l.bw.Reset(&c.upReq)
	writeUpstreamHead(l.bw, &rq, c.ip, c.id[:c.idLen])
	l.bw.Flush()
	c.reqLen = next
	c.state = clWaiting
	u.active.Add(1)
	l.send(c, u, true)
}

// send gives c's request to u on a pooled connection, or a new one when
// reuse is false or the pool is empty.
func (l *evLoop) send(c *lconn, u *upstream, reuse bool) {
	var up *lconn
	if reuse {
		up = l.pooled(u)
	}
	if up == nil {
		var err error
		if up, err = l.dial(u); err != nil {
			u.markDown(err)
			l.abandon(c, u)
			return
		}
	}
	c.peer, up.peer = up, c
	if !up.connecting {
		l.writeRequest(up)
	}
}

// abandon gives up on the loop serving c's request before anything reached
// a backend's application: the goroutine path retries and writes the
// error pages.
func (l *evLoop) abandon(c *lconn, u *upstream) {
	u.active.Add(-1)
	c.peer = nil
	c.state = clIdle
	l.handoff(c)
}

func (l *evLoop) writeRequest(up *lconn) {
	c := up.peer
	m, err := rawWrite(up.fd, c.upReq)
	if err == nil && m == len(c.upReq) {
		return
	}
	// A pooled connection the backend has closed, or a request that does
	// not fit the socket buffer: a backend never acts on a cut request.
	u := up.u
	reused := up.reused
	l.closeUp(up)
	if reused {
		l.send(c, u, false)
		return
	}
	l.abandon(c, u)
}

func (l *evLoop) upEvent(up *lconn, ev uint32) {
	if up.connecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		errno, err := unix.GetsockoptInt(up.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && errno != 0 {
			err = syscall.Errno(errno)
		}
		if err == nil && ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			err = unix.ECONNREFUSED
		}
		if err != nil {
			l.connectFailed(up, err)
			return
		}
		up.connecting = false
		up.u.markUp()
		if up.peer != nil {
			l.writeRequest(up)
		}
		return
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		up.drained = false
		up.rdhup = up.rdhup || ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
		l.readUp(up)
	}
}

func (l *evLoop) connectFailed(up *lconn, err error) {
	u, c := up.u, up.peer
	l.closeUp(up)
	u.markDown(fmt.Errorf("dial backend %s: %w", u.addr, err))
	if c != nil {
		l.abandon(c, u)
	}
}

// readUp reads the backend's response and relays it to the client.
func (l *evLoop) readUp(up *lconn) {
	if up.peer == nil {
		// Pooled: only the backend closing it (or misbehaving) wakes it.
		var b [64]byte
		if _, err := rawRead(up.fd, b[:]); err != unix.EAGAIN {
			l.unpool(up)
			l.closeUp(up)
		} else {
			up.drained = true
		}
		return
	}
	for {
		if up.peer.outPending() {
			return // resumed when the client has taken what it has
		}
		if !l.relay(up) {
			return
		}
		if up.drained {
			return
		}
		if up.off > 0 {
			up.n = copy(up.in, up.in[up.off:up.n])
			up.off = 0
		}
		space := len(up.in) - up.n
		m, err := rawRead(up.fd, up.in[up.n:])
		switch {
		case err == unix.EAGAIN:
			up.drained = true
			return
		case err != nil || m == 0:
			l.upEOF(up)
			return
		}
		up.n += m
		up.gotAny = true
		up.drained = m < space && !up.rdhup
	}
}

// relay moves what the backend sent to the client; false means the
// exchange is over (finished or failed) or waits for more room.
func (l *evLoop) relay(up *lconn) bool {
	c := up.peer
	if !up.headDone {
		for {
			end, next := headEnd(up.in[up.off:up.n])
			if end < 0 {
				if up.off == 0 && up.n == len(up.in) {
					if len(up.in) >= maxHeadBytes {
						l.badGateway(up, "the app's instance sent no valid response")
						return false
					}
					up.in = append(up.in, make([]byte, len(up.in))...)
					up.drained = false
				}
				return true
			}
			head := up.in[up.off : up.off+end]
			var rh respHead
			if err := scanResponseHead(head, &rh); err != nil {
				l.badGateway(up, "the app's instance sent a malformed response")
				return false
			}
			if rh.status < 200 && rh.status != 101 {
				up.off += next // 1xx informational responses are dropped
				continue
			}
			if rh.status == 101 {
				l.badGateway(up, "the app's instance switched protocols unasked")
				return false
			}
			c.status = rh.status
			mode, wmode := bodyLength, bodyLength
			switch {
			case c.isHead || rh.status == 204 || rh.status == 304:
				mode, wmode = bodyNone, bodyNone
			case rh.length >= 0:
			case rh.chunked:
				mode, wmode = bodyPassChunked, bodyChunked
			default:
				mode, wmode = bodyStream, bodyChunked
			}
			l.bw.Reset(&c.out)
			writeClientHead(l.bw, head, &rh, wmode, !c.keep)
			l.bw.WriteString("\r\n")
			l.bw.Flush()
			up.off += next
			up.headDone, up.mode, up.remaining = true, mode, rh.length
			up.keepAlive = rh.keepAlive && mode != bodyStream
			up.chunks = chunkScan{}
			// The request is answered: later bytes are the next request.
			c.off = c.reqLen
			break
		}
	}
	avail := up.in[up.off:up.n]
	done := false
	switch up.mode {
	case bodyNone:
		done = true
	case bodyLength:
		k := min(int64(len(avail)), up.remaining)
		c.out = append(c.out, avail[:k]...)
		up.off += int(k)
		up.remaining -= k
		c.bytes += k
		done = up.remaining == 0
	case bodyPassChunked:
		k, fin, err := up.chunks.feed(avail)
		c.out = append(c.out, avail[:k]...)
		up.off += k
		c.bytes += int64(k)
		if err != nil {
			l.rt.debug("backend response cut short", "backend", up.u.addr, "err", err)
			l.cut(up)
			return false
		}
		done = fin
	case bodyStream:
		if len(avail) > 0 {
			l.bw.Reset(&c.out)
			writeChunk(l.bw, avail)
			l.bw.Flush()
			c.bytes += int64(len(avail))
			up.off = up.n
		}
	}
	if up.off == up.n {
		up.off, up.n = 0, 0
	}
	if done {
		l.finish(up)
		return false
	}
	if !l.flushClient(c) {
		l.closeUp(up)
		return false
	}
	return true
}

// upEOF handles the backend closing the connection (or failing) while it
// serves a request.
func (l *evLoop) upEOF(up *lconn) {
	c, u := up.peer, up.u
	switch {
	case !up.gotAny && up.reused && !c.retried:
		// A pooled connection the backend closed as the request went
		// out: the request is replayable, send it on a new connection.
		c.retried = true
		l.closeUp(up)
		l.send(c, u, false)
	case !up.gotAny && !up.headDone:
		l.closeUp(up)
		l.abandon(c, u)
	case !up.headDone:
		l.badGateway(up, "the app's instance sent no valid response")
	case up.mode == bodyStream:
		c.out = append(c.out, "0\r\n\r\n"...)
		up.keepAlive = false
		l.finish(up)
	default:
		l.rt.debug("backend response cut short", "backend", u.addr)
		l.cut(up)
	}
}

// badGateway answers 502 for a backend that failed before its response
// head went out, and closes the client connection after it.
func (l *evLoop) badGateway(up *lconn, msg string) {
	c := up.peer
	l.rt.debug(msg, "backend", up.u.addr)
	c.status = 502
	c.keep = false
	c.off = c.reqLen
	l.bw.Reset(&c.out)
	c.bytes = writeErrorPage(l.bw, 502, "502 Bad Gateway: "+msg+".\n", true)
	l.bw.Flush()
	up.keepAlive = false
	l.finish(up)
}

// cut ends an exchange whose response head already went out: the client
// connection is closed so the client sees an incomplete response.
func (l *evLoop) cut(up *lconn) {
	c := up.peer
	c.keep = false
	up.keepAlive = false
	c.out = c.out[:c.outOff] // nothing more of the broken body
	l.finish(up)
}

// finish ends an exchange: the backend connection goes back to the pool
// when it can carry another request, the access log gets its line, and the
// client connection goes on with its next request or closes.
func (l *evLoop) finish(up *lconn) {
	c, u := up.peer, up.u
	u.active.Add(-1)
	c.peer, up.peer = nil, nil
	if up.keepAlive && up.n == up.off && !up.rdhup {
		l.pool(up, c.start)
	} else {
		l.closeUp(up)
	}
	l.logRequest(c)
	c.state = clIdle
	c.activeAt, c.headAt = l.now, 0
	if !c.keep || l.state.Load() != loopServe {
		c.closeAfter = true
	}
	if !l.flushClient(c) || c.outPending() {
		return
	}
	l.afterResponse(c)
}

// logRequest writes the access log line of c's request.
func (l *evLoop) logRequest(c *lconn) {
	if a := l.rt.alog; a != nil {
		line := appendLogSuffix(c.logBuf, c.status, c.bytes, time.Duration(l.now-c.start), c.upAddr, c.id[:c.idLen])
		c.logBuf = line[:0]
		a.write(line)
	}
}

// afterResponse goes on once a response has been written out.
func (l *evLoop) afterResponse(c *lconn) {
	if c.closeAfter {
		l.closeClient(c)
		return
	}
	if c.off < c.n || !c.drained {
		l.readClient(c)
	}
}

// flushClient writes c.out; false means the client is gone (and closed).
func (l *evLoop) flushClient(c *lconn) bool {
	moved := false
	for c.outOff < len(c.out) {
		m, err := rawWrite(c.fd, c.out[c.outOff:])
		if err == unix.EAGAIN {
			// The write timeout runs from the last byte the socket took.
			if moved || c.stallAt == 0 {
				c.stallAt = l.now
			}
			return true
		}
		if err != nil {
			l.clientGone(c)
			return false
		}
		c.outOff += m
		moved = true
	}
	c.out, c.outOff, c.stallAt = c.out[:0], 0, 0
	return true
}

// clientGone closes a client connection that failed or left, with the
// backend connection of its request in flight.
func (l *evLoop) clientGone(c *lconn) {
	if up := c.peer; up != nil {
		c.status = statusClientClosed
		c.keep = false
		up.keepAlive = false
		up.u.active.Add(-1)
		c.peer, up.peer = nil, nil
		l.closeUp(up)
		l.logRequest(c)
	}
	l.closeClient(c)
}

func (l *evLoop) closeClient(c *lconn) {
	if l.conns[c.fd] != c {
		return
	}
	l.conns[c.fd] = nil
	c.gen = 0
	unix.Close(c.fd)
	l.live.Add(-1)
}

func (l *evLoop) closeUp(up *lconn) {
	if up.fd >= 0 && l.conns[up.fd] == up {
		l.conns[up.fd] = nil
		unix.Close(up.fd)
	}
	up.fd = -1
}

// handoff gives a client connection, with what was read of it, to the
// goroutine path.
func (l *evLoop) handoff(c *lconn) {
	if l.conns[c.fd] != c {
		return
	}
	l.conns[c.fd] = nil
	l.live.Add(-1)
	unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, c.fd, nil) //nolint:errcheck // closing below removes it anyway
	f := os.NewFile(uintptr(c.fd), "client")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		l.rt.debug("hand client connection to the goroutine path failed", "err", err)
		return
	}
	l.ls.fs.adoptConn(nc, append([]byte(nil), c.in[c.off:c.n]...))
}

// pooled returns an idle connection to u, or nil.
func (l *evLoop) pooled(u *upstream) *lconn {
	idle := l.pools[u]
	for len(idle) > 0 {
		up := idle[len(idle)-1]
		idle[len(idle)-1] = nil
		idle = idle[:len(idle)-1]
		if u.retired.Load() || l.now-up.idleAt >= int64(l.rt.cfg.IdleConnTimeout) {
			l.closeUp(up)
			continue
		}
		l.pools[u] = idle
		up.reused = true
		return up
	}
	l.pools[u] = idle
	return nil
}

func (l *evLoop) pool(up *lconn, now int64) {
	u := up.u
	idle := l.pools[u]
	if u.retired.Load() || len(idle) >= l.rt.cfg.MaxIdleConnsPerBackend || l.state.Load() >= loopClose {
		l.closeUp(up)
		return
	}
	up.idleAt = now
	up.headDone, up.gotAny, up.off, up.n = false, false, 0, 0
	l.pools[u] = append(idle, up)
}

func (l *evLoop) unpool(up *lconn) {
	idle := l.pools[up.u]
	for i, c := range idle {
		if c == up {
			l.pools[up.u] = append(idle[:i], idle[i+1:]...)
			return
		}
	}
}

// dial opens a non-blocking connection to u; the request goes out when it
// is established.
func (l *evLoop) dial(u *upstream) (*lconn, error) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if a := u.ap.Addr(); a.Is4() || a.Is4In6() {
		sa = &unix.SockaddrInet4{Port: int(u.ap.Port()), Addr: a.Unmap().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(u.ap.Port()), Addr: a.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dial backend %s: %w", u.addr, err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) //nolint:errcheck // best effort
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1) //nolint:errcheck // best effort
	err = unix.Connect(fd, sa)
	connecting := err == unix.EINPROGRESS
	if err != nil && !connecting {
		unix.Close(fd)
		return nil, fmt.Errorf("dial backend %s: %w", u.addr, err)
	}
	up := &lconn{fd: fd, u: u, in: make([]byte, loopReadBuf), connecting: connecting, connectAt: l.now}
	if err := l.register(up); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dial backend %s: %w", u.addr, err)
	}
	if !connecting {
		u.markUp()
	}
	return up, nil
}

// epollPoll is epoll_wait with a zero timeout, which never blocks.
func epollPoll(ep int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawRead and rawWrite skip the scheduler's system call bookkeeping: the
// sockets are non-blocking, so the calls never block.
func rawRead(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
