package router

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	acmeChallengePrefix = "/.well-known/acme-challenge/"
	// maxAttempts bounds how many backends one request may be tried on.
	maxAttempts = 4
	// bodyReuseWindow is how long a pooled connection may have been idle
	// and still carry a request with a body. A request body cannot be sent
	// twice, so such requests avoid connections the backend may be closing.
	bodyReuseWindow = 2 * time.Second
	// statusClientClosed is logged (never sent) when the client went away.
	statusClientClosed = 499
)

// aLongTimeAgo is a deadline in the past: setting it wakes blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// ServeHTTP proxies one request to a backend of the app that owns its Host.
func (rt *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.ProtoMajor == 2 {
		sw := &streamWriter{ResponseWriter: w}
		rt.httpsWrites.add(sw)
		defer rt.httpsWrites.remove(sw)
		w = sw
	}
	e := logEntry{status: http.StatusOK}
	if rt.alog != nil {
		e.start = time.Now()
	}
	e.id = requestID(req, rt)
	e.host = normalizeHost(req.Host)
	abort := false

	if status, msg := checkRequest(req); status != 0 {
		e.status = status
		e.bytes = rt.page(w, status, msg)
	}
	switch {
	case e.status != http.StatusOK:
	case rt.acmeHTTP != nil && req.TLS == nil && strings.HasPrefix(req.URL.Path, acmeChallengePrefix):
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rt.acmeHTTP.ServeHTTP(sw, req)
		e.status, e.bytes = sw.status, sw.bytes
	case req.TLS == nil && rt.redirectHTTPS([]byte(e.host)):
		e.status, e.bytes = rt.redirect(w, req, e.host)
	default:
		r := rt.table.Load().lookup(e.host)
		if r == nil {
			e.status = http.StatusNotFound
			e.bytes = rt.page(w, http.StatusNotFound, "404 Not Found: no app is served at host \""+e.host+
				"\".\nCheck the address, or attach the domain to an app: berth domains:add APP "+e.host+"\n")
			break
		}
		abort = rt.proxy(w, req, r, &e)
	}

	if rt.alog != nil {
		e.remote, e.method, e.uri, e.proto = req.RemoteAddr, req.Method, req.RequestURI, req.Proto
		var arr [320]byte
		rt.alog.write(e.appendLine(rt.alog, arr[:0], time.Now()))
	}
	if abort {
		// The response was cut short after its head went out: abort the
		// client connection so the client sees an incomplete response.
		panic(http.ErrAbortHandler)
	}
}

// checkRequest holds a request net/http parsed to the limits the plain
// front ends apply to a head (parseRequestHead); it returns the status and
// page of a refusal, or 0.
func checkRequest(req *http.Request) (int, string) {
	if !validHost(req.Host) {
		return http.StatusBadRequest, pageBadHost
	}
	names := 0
	for _, v := range req.Header["Connection"] {
		for t := range strings.SplitSeq(v, ",") {
			if isConnName(strings.TrimSpace(t)) {
				names++
			}
		}
	}
	if names > maxConnTokens {
		return http.StatusBadRequest, pageTooManyConnNames
	}
	fields := 0
	for _, vv := range req.Header {
		fields += len(vv)
	}
	if fields > maxHeaderFields {
		return http.StatusRequestHeaderFieldsTooLarge, pageTooManyFields
	}
	return 0, ""
}

// isConnName reports whether a Connection token names a header to drop,
// rather than being empty or one of the options close, keep-alive, upgrade.
func isConnName(t string) bool {
	return t != "" && !strings.EqualFold(t, "close") && !strings.EqualFold(t, "keep-alive") && !strings.EqualFold(t, "upgrade")
}

// page writes one of the router's own plain-text error pages.
func (rt *Router) page(w http.ResponseWriter, status int, msg string) int64 {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(msg)))
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "5")
	}
	w.WriteHeader(status)
	n, _ := io.WriteString(w, msg)
	return int64(n)
}

// redirect sends a plain-HTTP request to its HTTPS address (writeRedirect).
func (rt *Router) redirect(w http.ResponseWriter, req *http.Request, host string) (int, int64) {
	status := redirectStatus(req.Method)
	h := w.Header()
	h.Set("Location", "https://"+host+rt.httpsPort+req.URL.RequestURI())
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(redirectPage)))
	w.WriteHeader(status)
	n, _ := io.WriteString(w, redirectPage)
	return status, int64(n)
}

// result says how one attempt on one backend ended.
type result int

const (
	resDone  result = iota // the response (or an error page) went out
	resRetry               // nothing reached the backend: try again
)

// proxy sends the request to a backend of r, retrying on others where that
// is safe. It reports whether the client connection must be aborted.
func (rt *Router) proxy(w http.ResponseWriter, req *http.Request, r *route, e *logEntry) (abort bool) {
	hasBody := req.Body != nil && req.Body != http.NoBody
	maxIdle := rt.cfg.IdleConnTimeout
	if hasBody && maxIdle > bodyReuseWindow {
		maxIdle = bodyReuseWindow
	}
	replayable := !hasBody && idempotent(req.Method)
	ctx := req.Context()
	now := time.Now().UnixNano()
	var skip tried
	closedEarly := false // a backend took the connection, then closed it
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			// Retry against the table in force now: the backend that
			// failed may have been swapped out meanwhile.
			if r = rt.table.Load().lookup(e.host); r == nil {
				break
			}
		}
		u := r.pick(rt.cfg.Policy, &skip, now)
		if u == nil {
			break
		}
		e.upstream = u.addr
		u.active.Add(1)
		pc, reused, err := u.get(ctx, maxIdle, now)
		if err != nil {
			u.active.Add(-1)
			if ctx.Err() != nil {
				e.status = statusClientClosed
				return false
			}
			// Nothing was sent: any request may go to another backend.
			u.markDown(err)
			skip.add(u)
			continue
		}
		res, ab := rt.roundTrip(w, req, pc, replayable, e)
		u.active.Add(-1)
		if res == resDone {
			return ab
		}
		// Nothing reached the backend's application. A pooled connection
		// the backend had just closed: dial afresh. A new connection reset
		// at once (a backend closing its listener): try another backend.
		maxIdle = 0
		if !reused {
			skip.add(u)
			closedEarly = true
		}
	}
	if closedEarly {
		e.status = http.StatusBadGateway
		e.bytes = rt.page(w, http.StatusBadGateway, "502 Bad Gateway: the app's instance closed the connection without responding.\n")
		return false
	}
	e.status = http.StatusServiceUnavailable
	e.bytes = rt.page(w, http.StatusServiceUnavailable, "503 Service Unavailable: app \""+r.appName()+
		"\" has no healthy instance right now.\nCheck it with: berth ps:report "+r.appName()+"\n")
	return false
}

func (r *route) appName() string {
	if r == nil {
		return "?"
	}
	return r.app
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// roundTrip sends the request on pc and copies the response to w. canRetry
// says a request that may be sent again (idempotent, without a body): a
// failure before any response byte then asks for a retry.
func (rt *Router) roundTrip(w http.ResponseWriter, req *http.Request, pc *pconn, canRetry bool, e *logEntry) (result, bool) {
	// Wake blocked backend I/O when the client goes away.
	stop := context.AfterFunc(req.Context(), func() { pc.conn.SetDeadline(aLongTimeAgo) })
	reusable := false
	defer func() {
		if stop() && reusable {
			pc.u.put(pc, time.Now().UnixNano())
			return
		}
		pc.conn.Close()
	}()

	upgrade := upgradeType(req)
	if err := writeRequest(pc.bw, req, e.id, upgrade, &rt.copyBufs); err != nil {
		var be bodyError
		switch {
		case req.Context().Err() != nil || errors.As(err, &be):
			e.status = statusClientClosed
			return resDone, false
		case canRetry:
			return resRetry, false
		}
		rt.debug("send request to backend failed", "backend", pc.u.addr, "err", err)
		e.status = http.StatusBadGateway
		e.bytes = rt.page(w, http.StatusBadGateway, "502 Bad Gateway: the app's instance closed the connection.\n")
		return resDone, false
	}

	h := w.Header()
	var rh respHead
	for {
		head, err := readHead(pc.br)
		if err != nil {
			switch {
			case req.Context().Err() != nil:
				e.status = statusClientClosed
				return resDone, false
			case canRetry && errors.Is(err, errNothingRead):
				return resRetry, false
			}
			rt.debug("read backend response failed", "backend", pc.u.addr, "err", err)
			e.status = http.StatusBadGateway
			e.bytes = rt.page(w, http.StatusBadGateway, "502 Bad Gateway: the app's instance sent no valid response.\n")
			return resDone, false
		}
		rh = respHead{}
		if err := parseHead(head, h, &rh); err != nil {
			clear(h)
			rt.debug("parse backend response failed", "backend", pc.u.addr, "err", err)
			e.status = http.StatusBadGateway
			e.bytes = rt.page(w, http.StatusBadGateway, "502 Bad Gateway: the app's instance sent a malformed response.\n")
			return resDone, false
		}
		if rh.status >= 200 || rh.status == http.StatusSwitchingProtocols {
			break
		}
		// Informational responses (103 Early Hints…) are dropped.
		clear(h)
	}
	e.status = rh.status

	if rh.status == http.StatusSwitchingProtocols {
		if upgrade == "" || rh.upgrade == "" {
			clear(h)
			e.status = http.StatusBadGateway
			e.bytes = rt.page(w, http.StatusBadGateway, "502 Bad Gateway: the app's instance switched protocols unasked.\n")
			return resDone, false
		}
		if !stop() {
			e.status = statusClientClosed
			return resDone, false
		}
		e.bytes = rt.tunnel(w, pc, &rh)
		return resDone, false
	}

	noBody := req.Method == http.MethodHead || rh.status == http.StatusNoContent || rh.status == http.StatusNotModified
	if !noBody {
		if _, ok := h["Content-Type"]; !ok {
			// Forward "no Content-Type" as is: no sniffing by net/http.
			h["Content-Type"] = nil
		}
	}
	w.WriteHeader(rh.status)
	if rh.trailer {
		// Commit to chunked encoding now so the trailers can follow.
		http.NewResponseController(w).Flush()
	}
	if noBody {
		// Bytes after a head without a body are the backend's fault: they
		// would be the next request's response.
		reusable = rh.keepAlive && pc.br.Buffered() == 0
		return resDone, false
	}

	var n int64
	var rerr, werr error
	switch {
	case rh.chunked:
		n, rerr, werr = copyBody(w, httputil.NewChunkedReader(pc.br), pc.br, &rt.copyBufs)
		if rerr == nil && werr == nil {
			rerr = readTrailers(pc.br, h)
		}
	case rh.length >= 0:
		if rh.length <= int64(pc.br.Buffered()) {
			p, _ := pc.br.Peek(int(rh.length))
			nw, err := w.Write(p)
			pc.br.Discard(int(rh.length))
			n, werr = int64(nw), err
		} else {
			n, rerr, werr = copyBody(w, &io.LimitedReader{R: pc.br, N: rh.length}, pc.br, &rt.copyBufs)
			if rerr == nil && werr == nil && n < rh.length {
				rerr = io.ErrUnexpectedEOF
			}
		}
	default:
		rh.keepAlive = false
		n, rerr, werr = copyBody(w, pc.br, pc.br, &rt.copyBufs)
	}
	e.bytes = n
	switch {
	case werr != nil || req.Context().Err() != nil:
		e.status = statusClientClosed
		return resDone, false
	case rerr != nil:
		rt.debug("backend response cut short", "backend", pc.u.addr, "err", rerr)
		return resDone, true
	}
	reusable = rh.keepAlive && pc.br.Buffered() == 0
	return resDone, false
}

func (rt *Router) debug(msg string, args ...any) {
	if rt.logger.Enabled(rt.ctx, levelDebug) {
		rt.logger.Debug(msg, args...)
	}
}

// copyBody copies a response body to the client, flushing whenever the
// backend has nothing more buffered so streamed responses are not held back.
func copyBody(w http.ResponseWriter, src io.Reader, br interface{ Buffered() int }, bufs *sync.Pool) (n int64, rerr, werr error) {
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	fl, _ := w.(http.Flusher)
	for {
		nr, er := src.Read(buf)
		if nr > 0 {
			nw, ew := w.Write(buf[:nr])
			n += int64(nw)
			if ew != nil {
				return n, nil, ew
			}
			if fl != nil && br.Buffered() == 0 {
				fl.Flush()
			}
		}
		if er == io.EOF {
			return n, nil, nil
		}
		if er != nil {
			return n, er, nil
		}
	}
}

// tunnel finishes a protocol switch (websockets): it hijacks the client
// connection, sends it the 101 response and copies bytes both ways until
// either side closes. It returns the bytes sent to the client.
func (rt *Router) tunnel(w http.ResponseWriter, pc *pconn, rh *respHead) int64 {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		rt.debug("hijack for upgrade failed", "err", err)
		return 0
	}
	rt.trackHijacked(conn, true)
	defer rt.trackHijacked(conn, false)
	defer conn.Close()
	conn.SetDeadline(time.Time{})
	pc.conn.SetDeadline(time.Time{})

	bw := brw.Writer
	bw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	for k, vv := range w.Header() {
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
	bw.WriteString(rh.upgrade)
	bw.WriteString("\r\n\r\n")
	if err := bw.Flush(); err != nil {
		return 0
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		// Client to backend, starting with what the client sent early.
		io.Copy(pc.conn, brw.Reader) //nolint:errcheck // ends the tunnel either way
		if tc, ok := pc.conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	n, _ := io.Copy(conn, pc.br)
	conn.Close()
	pc.conn.Close()
	<-done
	return n
}

// upgradeType returns the Upgrade header of an HTTP/1.1 upgrade request.
func upgradeType(req *http.Request) string {
	if req.ProtoMajor != 1 {
		return ""
	}
	up := req.Header["Upgrade"]
	if len(up) == 0 || !headerHasToken(req.Header["Connection"], "upgrade") {
		return ""
	}
	return up[0]
}

func headerHasToken(vals []string, token string) bool {
	for _, v := range vals {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// statusWriter records the status and size of a response written by a
// handler other than the proxy (the ACME challenge responder).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	s.wrote = true
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

// requestID returns the client's X-Request-Id when it is sane, else a new id.
func requestID(req *http.Request, rt *Router) string {
	if v := req.Header["X-Request-Id"]; len(v) == 1 && validRequestID(v[0]) {
		return v[0]
	}
	var b [20]byte
	copy(b[:8], rt.idPrefix[:])
	seq := rt.idSeq.Add(1)
	for i := 19; i >= 8; i-- {
		b[i] = hexDigits[seq&15]
		seq >>= 4
	}
	return string(b[:])
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == ':' || c == '+' || c == '=' || c == '/') {
			return false
		}
	}
	return true
}

// clientIP strips the port from a RemoteAddr.
func clientIP(remote string) string {
	if i := strings.LastIndexByte(remote, ':'); i >= 0 {
		remote = remote[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(remote, "["), "]")
}
