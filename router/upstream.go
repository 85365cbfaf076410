package router

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

const (
	upstreamReadBuf  = 8 << 10
	upstreamWriteBuf = 4 << 10
)

// upstream is one backend address with its pool of keep-alive connections
// and its passive health. It outlives tables: a backend present in two
// successive tables keeps its pool.
type upstream struct {
	id, addr string
	rt       *Router

	active    atomic.Int64 // requests in flight, for LeastConn
	downUntil atomic.Int64 // unix nanoseconds; 0 when up

	mu   sync.Mutex
	idle []*pconn
	// retired is set, under mu, when the backend leaves the table; it is
	// atomic for the event loops' pools, which check it without the lock.
	retired atomic.Bool
	// ap is addr parsed, for the event loops' own dialing; ok is false
	// for a name that needs resolving.
	ap   netip.AddrPort
	apOK bool
}

// pconn is one connection to a backend with its buffers.
type pconn struct {
	u      *upstream
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt int64 // unix nanoseconds when it went back to the pool
}

func newUpstream(id, addr string, rt *Router) *upstream {
	u := &upstream{id: id, addr: addr, rt: rt}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		u.ap, u.apOK = ap, true
	}
	return u
}

// up reports whether the backend may take requests at time now.
func (u *upstream) up(now int64) bool {
	d := u.downUntil.Load()
	return d == 0 || now >= d
}

// markDown leaves the backend out of rotation for the fail timeout.
func (u *upstream) markDown(err error) {
	now := time.Now().UnixNano()
	prev := u.downUntil.Swap(now + int64(u.rt.cfg.FailTimeout))
	if prev == 0 || now >= prev {
		u.rt.logger.Warn("backend down: connection failed", "backend", u.id, "addr", u.addr,
			"retry_in", u.rt.cfg.FailTimeout, "err", err)
	}
}

// markUp clears a passive failure after a successful connection.
func (u *upstream) markUp() {
	if u.downUntil.Load() != 0 && u.downUntil.Swap(0) != 0 {
		u.rt.logger.Info("backend up again", "backend", u.id, "addr", u.addr)
	}
}

// get returns a pooled connection idle for less than maxIdle at now (unix
// nanoseconds), or dials a new one. reused says which it was.
func (u *upstream) get(ctx context.Context, maxIdle time.Duration, now int64) (pc *pconn, reused bool, err error) {
	for maxIdle > 0 {
		var stale []*pconn
		u.mu.Lock()
		for n := len(u.idle); n > 0; n = len(u.idle) {
			c := u.idle[n-1]
			u.idle[n-1] = nil
			u.idle = u.idle[:n-1]
			if now-c.idleAt < int64(maxIdle) {
				pc = c
				break
			}
			stale = append(stale, c)
		}
		u.mu.Unlock()
		for _, c := range stale {
			c.conn.Close()
		}
		if pc == nil {
			break
		}
		if quiet(pc.conn) {
			return pc, true, nil
		}
		pc.conn.Close()
		pc = nil
	}
	d := net.Dialer{Timeout: u.rt.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, false, fmt.Errorf("dial backend %s: %w", u.addr, err)
	}
	u.markUp()
	return &pconn{
		u:    u,
		conn: conn,
		br:   bufio.NewReaderSize(conn, upstreamReadBuf),
		bw:   bufio.NewWriterSize(conn, upstreamWriteBuf),
	}, false, nil
}

// put returns a connection to the pool, or closes it when the backend left
// the table or the pool is full. now is the time of the request it served
// (reading the clock costs more than the pool): the idle age is overstated
// by that request's length, which only retires connections sooner.
func (u *upstream) put(pc *pconn, now int64) {
	pc.idleAt = now
	u.mu.Lock()
	if u.retired.Load() || len(u.idle) >= u.rt.cfg.MaxIdleConnsPerBackend {
		u.mu.Unlock()
		pc.conn.Close()
		return
	}
	u.idle = append(u.idle, pc)
	u.mu.Unlock()
}

// retire closes the pool: the backend is no longer in the table. In-flight
// requests go on; their connections are closed when they end.
func (u *upstream) retire() {
	u.mu.Lock()
	u.retired.Store(true)
	idle := u.idle
	u.idle = nil
	u.mu.Unlock()
	for _, c := range idle {
		c.conn.Close()
	}
}

// prune closes pooled connections idle longer than maxIdle.
func (u *upstream) prune(maxIdle time.Duration) {
	cutoff := time.Now().UnixNano() - int64(maxIdle)
	var stale []*pconn
	u.mu.Lock()
	keep := u.idle[:0]
	for _, c := range u.idle {
		if c.idleAt < cutoff {
			stale = append(stale, c)
		} else {
			keep = append(keep, c)
		}
	}
	for i := len(keep); i < len(u.idle); i++ {
		u.idle[i] = nil
	}
	u.idle = keep
	u.mu.Unlock()
	for _, c := range stale {
		c.conn.Close()
	}
}

// tried is the small set of backends a request has already failed on.
type tried struct {
	n  int
	us [4]*upstream
}

func (t *tried) add(u *upstream) {
	if t.n < len(t.us) {
		t.us[t.n] = u
		t.n++
	}
}

func (t *tried) has(u *upstream) bool {
	for i := 0; i < t.n; i++ {
		if t.us[i] == u {
			return true
		}
	}
	return false
}

// pick chooses a backend that is up at now (unix nanoseconds) and not yet
// tried. When every untried
// backend is down it still offers the one that went down first, as nginx
// does for a lone server: a single refused connection must not turn an
// app into 503s for the whole fail timeout. It returns nil when every
// backend has been tried.
func (r *route) pick(p Policy, skip *tried, now int64) *upstream {
	n := uint32(len(r.upstreams))
	if n == 0 {
		return nil
	}
	start := r.next.Add(1)
	var u *upstream
	if p == LeastConn {
		var bestActive int64
		for i := uint32(0); i < n; i++ {
			c := r.upstreams[(start+i)%n]
			if !c.up(now) || skip.has(c) {
				continue
			}
			if a := c.active.Load(); u == nil || a < bestActive {
				u, bestActive = c, a
			}
		}
	} else {
		for i := uint32(0); i < n; i++ {
			c := r.upstreams[(start+i)%n]
			if c.up(now) && !skip.has(c) {
				u = c
				break
			}
		}
	}
	if u != nil {
		return u
	}
	var firstDown int64
	for _, c := range r.upstreams {
		if skip.has(c) {
			continue
		}
		if d := c.downUntil.Load(); u == nil || d < firstDown {
			u, firstDown = c, d
		}
	}
	return u
}
