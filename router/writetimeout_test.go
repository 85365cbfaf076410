package router

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/coder/websocket"
)

const (
	testWriteTimeout = time.Second
	writeSlack       = 3 * time.Second // sweep ticks, buffers filling, -race, load
	// A stalled download is well over what the router's socket buffers
	// hold (4 MiB at most here) and an HTTP/2 client's default stream
	// window (4 MiB), so the router's writes block.
	stalledSize = 16 << 20
	// A slow reader takes slowSize in bursts of slowBurst, with pauses each
	// under the write timeout that add up to several times it.
	slowSize  = 8 << 20
	slowBurst = 1 << 20
	slowPause = testWriteTimeout * 2 / 5
)

// bigBody answers a GET for /?n=N with N bytes, with a Content-Length when
// the query has "length", else chunked (on HTTP/1.1).
var bigBody = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4<<10)
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	if r.URL.Query().Has("length") {
		w.Header().Set("Content-Length", strconv.Itoa(n))
	}
	for n > 0 {
		k := min(n, len(chunk))
		if _, err := w.Write(chunk[:k]); err != nil {
			return
		}
		n -= k
	}
})

// readSlowly reads a response body of size bytes in bursts, pausing before
// each, and fails the test if it is cut.
func readSlowly(t *testing.T, body io.Reader, size int64) {
	t.Helper()
	start := time.Now()
	var n int64
	for {
		time.Sleep(slowPause)
		k, err := io.CopyN(io.Discard, body, slowBurst)
		n += k
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read body after %d bytes, %v: %v", n, time.Since(start), err)
		}
	}
	if d := time.Since(start); n != size || d < 2*testWriteTimeout {
		t.Fatalf("got %d bytes in %v, want %d over more than %v", n, d, size, 2*testWriteTimeout)
	}
}

// readCut reads what is left of a response the router cut: fewer than
// size bytes (size < 0: any number), then an error matching want (nil: any
// error). An abortive close shows as ECONNRESET, where a graceful one would
// give the client the bytes queued for it and then an end of stream.
func readCut(t *testing.T, body io.Reader, size int64, want error) {
	t.Helper()
	n, err := io.Copy(io.Discard, body)
	if err == nil || (size >= 0 && n >= size) {
		t.Fatalf("got %d bytes (%v) of a response cut short", n, err)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("response cut with %v after %d bytes, want %v", err, n, want)
	}
}

// checkCutTime fails the test unless the cut came between the write
// timeout and writeSlack after it.
func checkCutTime(t *testing.T, start time.Time) {
	t.Helper()
	if d := time.Since(start); d < testWriteTimeout || d > testWriteTimeout+writeSlack {
		t.Fatalf("cut after %v, want %v to %v", d, testWriteTimeout, testWriteTimeout+writeSlack)
	}
}

// sendingApp serves bigBody at / and a websocket at /ws that sends ?n MiB
// in messages of 1 MiB and closes, or without n sends until a write fails,
// or with ?idle only reads. open counts its websockets still open.
func sendingApp(open *atomic.Int64) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", bigBody)
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		open.Add(1)
		defer open.Add(-1)
		defer c.CloseNow()
		q := r.URL.Query()
		if q.Has("idle") {
			c.Read(r.Context()) //nolint:errcheck // ends with the websocket
			return
		}
		msg := bytes.Repeat([]byte("0123456789abcdef"), 64<<10)
		n := -1
		if q.Has("n") {
			n, _ = strconv.Atoi(q.Get("n"))
		}
		for i := 0; n < 0 || i < n; i++ {
			if c.Write(r.Context(), websocket.MessageBinary, msg) != nil {
				return
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	})
	return mux
}

// site is a router serving app.test on one front end (loop, fast or
// https), with a backend of its own (sendingApp), so that a test can count
// their connections.
type site struct {
	be     *backend
	rt     *Router
	addr   string
	wsOpen atomic.Int64
	// fs is the plain-HTTP server; roots trust the HTTPS certificate.
	fs    *fastServer
	roots *x509.CertPool
}

func startSite(t *testing.T, front string) *site {
	t.Helper()
	s := &site{}
	s.be = startBackend(t, "big", sendingApp(&s.wsOpen))
	cfg := Config{WriteTimeout: testWriteTimeout, ClientIdleTimeout: time.Minute}
	tbl := appTable(map[string][]*backend{"app": {s.be}})
	if front != "https" {
		s.rt = newRouter(t, cfg)
		s.rt.SetTable(tbl)
		s.addr, s.fs = servePlain(t, s.rt, front == "fast")
		return s
	}
	certPEM, keyPEM, _ := testenv.SelfSigned(t, "app.test")
	crt, err := ParseCertificate(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLS = true
	tbl.Certs = map[string]*tls.Certificate{"app.test": crt}
	s.rt = newRouter(t, cfg)
	s.rt.SetTable(tbl)
	_, s.addr = serveTLSRouter(t, s.rt, nil)
	s.roots = x509.NewCertPool()
	s.roots.AppendCertsFromPEM(certPEM)
	return s
}

// conns counts the router's client connections.
func (s *site) conns() int {
	if s.fs != nil {
		return int(clientConns(s.fs))
	}
	s.rt.httpsWrites.mu.Lock()
	defer s.rt.httpsWrites.mu.Unlock()
	n := 0
	for c := range s.rt.httpsWrites.set {
		if _, ok := c.(*watchedConn); ok {
			n++
		}
	}
	return n
}

// stallingConn is a client connection whose reads wait, once stop is set,
// until resume: a client that stops reading its socket altogether, below
// TLS and HTTP/2.
type stallingConn struct {
	net.Conn
	stop    atomic.Bool
	resumed chan struct{}
	once    sync.Once
}

func (c *stallingConn) Read(p []byte) (int, error) {
	if c.stop.Load() {
		<-c.resumed
	}
	return c.Conn.Read(p)
}

func (c *stallingConn) resume() { c.once.Do(func() { close(c.resumed) }) }

// resumingReader resumes conn's reads before its own first read.
type resumingReader struct {
	io.Reader
	conn *stallingConn
}

func (r *resumingReader) Read(p []byte) (int, error) {
	r.conn.resume()
	return r.Reader.Read(p)
}

// dial opens a client connection with a small receive buffer, so the
// router's writes wait on the client soon; over HTTPS it speaks proto.
func (s *site) dial(t *testing.T, proto string) (net.Conn, *stallingConn) {
	t.Helper()
	conn := dialRouter(t, s.addr)
	if err := conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	sc := &stallingConn{Conn: conn, resumed: make(chan struct{})}
	t.Cleanup(sc.resume)
	if s.roots == nil {
		return sc, sc
	}
	tc := tls.Client(sc, &tls.Config{ServerName: "app.test", RootCAs: s.roots, NextProtos: []string{proto}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != proto {
		t.Fatalf("negotiated %q, want %q", got, proto)
	}
	return tc, sc
}

// get sends a GET for target, with header lines, on a new HTTP/1.1
// connection and reads the response head; what follows it is for br.
func (s *site) get(t *testing.T, target, header string) (resp *http.Response, br *bufio.Reader) {
	t.Helper()
	conn, _ := s.dial(t, "http/1.1")
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: app.test\r\n%s\r\n", target, header); err != nil {
		t.Fatal(err)
	}
	br = bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response head: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, br
}

// client returns an HTTP client of the site and the URL of its root; over
// HTTPS it speaks HTTP/2 if h2, else HTTP/1.1.
func (s *site) client(t *testing.T, h2 bool) (*http.Client, string) {
	t.Helper()
	if s.roots == nil {
		return newClient(t), "http://" + s.addr
	}
	tr := &http.Transport{
		ForceAttemptHTTP2: h2,
		TLSClientConfig:   &tls.Config{RootCAs: s.roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}, "https://app.test"
}

// fetch GETs path with a new client and returns the body of its 200
// response.
func (s *site) fetch(t *testing.T, path string) string {
	t.Helper()
	c, root := s.client(t, true)
	req, err := http.NewRequest(http.MethodGet, root+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "app.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("get %s: %d, %v", path, resp.StatusCode, err)
	}
	return string(body)
}

// websocket opens a websocket to /ws?query, closed at cleanup.
func (s *site) websocket(t *testing.T, query string) *websocket.Conn {
	t.Helper()
	c, root := s.client(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(root, "http")+"/ws?"+query, &websocket.DialOptions{Host: "app.test", HTTPClient: c})
	if err != nil {
		t.Fatalf("dial websocket: %v", err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

// stallingH2Client returns an HTTP/2 client whose one connection is the
// stallingConn returned. Its stream windows are larger than a stalled
// download, so that only the socket holds it back.
func (s *site) stallingH2Client(t *testing.T) (*http.Client, *stallingConn) {
	t.Helper()
	conn, sc := s.dial(t, "h2")
	conn.SetDeadline(time.Time{})
	tr := &http.Transport{
		ForceAttemptHTTP2: true,
		DialTLSContext:    func(context.Context, string, string) (net.Conn, error) { return conn, nil },
		HTTP2:             &http.HTTP2Config{MaxReceiveBufferPerConnection: 64 << 20, MaxReceiveBufferPerStream: 64 << 20},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}, sc
}

// h2Get sends a GET for target with c and checks it went over HTTP/2.
func h2Get(t *testing.T, c *http.Client, target string) *http.Response {
	t.Helper()
	resp, err := c.Get("https://app.test" + target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	return resp
}

// wsReader reads the messages of a websocket as one stream, which ends
// when the other end closes normally; ctx bounds the whole.
type wsReader struct {
	ctx context.Context
	c   *websocket.Conn
	r   io.Reader
}

func (w *wsReader) Read(p []byte) (int, error) {
	for {
		if w.r != nil {
			n, err := w.r.Read(p)
			if err != io.EOF {
				return n, err
			}
			w.r = nil
			if n > 0 {
				return n, nil
			}
		}
		_, r, err := w.c.Reader(w.ctx)
		if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		w.r = r
	}
}

// TestWriteTimeout: on each front end, a client that sends a request and
// stops reading is cut after the write timeout, with the backend
// connection of its response (not reused), whether the response has a
// length, is chunked, or is a websocket after its upgrade. The cut is
// abortive: the client reads what its socket holds, then a reset, where a
// graceful close would let it read on what the router had queued, then an
// end of stream. A slow client that keeps reading is not cut, however long
// its download, nor an idle websocket. Over HTTP/2, a client that stops
// reading its connection is cut too, and a stream left unread while the
// connection is read is reset, the connection going on.
func TestWriteTimeout(t *testing.T) {
	big := "/?n=" + strconv.Itoa(stalledSize)
	upgrade := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	stalls := []struct {
		name          string
		target, extra string // the request's target and header lines
		ws            bool
		size          int64 // the response's length; -1: endless
	}{
		{name: "content-length", target: big + "&length", size: stalledSize},
		{name: "chunked", target: big, size: stalledSize},
		{name: "websocket", target: "/ws", extra: upgrade, ws: true, size: -1},
	}
	slow := []struct {
		name string
		// body sends a request for slowSize bytes and returns its body.
		body func(t *testing.T, s *site) io.Reader
	}{
		{name: "content-length", body: func(t *testing.T, s *site) io.Reader {
			resp, _ := s.get(t, "/?length&n="+strconv.Itoa(slowSize), "")
			return resp.Body
		}},
		{name: "chunked", body: func(t *testing.T, s *site) io.Reader {
			resp, _ := s.get(t, "/?n="+strconv.Itoa(slowSize), "")
			return resp.Body
		}},
		{name: "websocket", body: func(t *testing.T, s *site) io.Reader {
			ws := s.websocket(t, "n="+strconv.Itoa(slowSize/slowBurst))
			ws.SetReadLimit(2 * slowBurst)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			t.Cleanup(cancel)
			return &wsReader{ctx: ctx, c: ws}
		}},
	}
	for _, front := range []string{"loop", "fast", "https"} {
		for _, tc := range stalls {
			t.Run(front+"/"+tc.name+"/stalled client", func(t *testing.T) {
				t.Parallel()
				s := startSite(t, front)
				start := time.Now()
				resp, br := s.get(t, tc.target, tc.extra)
				released := func() bool { return s.be.conns.Load() == 0 }
				body := io.Reader(resp.Body)
				if tc.ws {
					if resp.StatusCode != http.StatusSwitchingProtocols {
						t.Fatalf("upgrade answered %d", resp.StatusCode)
					}
					waitFor(t, "the backend to take the websocket", func() bool { return s.wsOpen.Load() == 1 })
					released = func() bool { return s.wsOpen.Load() == 0 }
					body = br
				}
				waitFor(t, "the router to close the backend connection", released)
				checkCutTime(t, start)
				readCut(t, body, tc.size, syscall.ECONNRESET)
				waitFor(t, "the router to forget the client connection", func() bool { return s.conns() == 0 })
				if got := s.fetch(t, "/?n=5&length"); got != "01234" {
					t.Fatalf("next request: got %q", got)
				}
			})
		}
		for _, tc := range slow {
			t.Run(front+"/"+tc.name+"/slow reader", func(t *testing.T) {
				t.Parallel()
				readSlowly(t, tc.body(t, startSite(t, front)), slowSize)
			})
		}
		t.Run(front+"/websocket/idle", func(t *testing.T) {
			t.Parallel()
			ws := startSite(t, front).websocket(t, "idle")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ctx = ws.CloseRead(ctx)
			time.Sleep(3 * testWriteTimeout)
			if err := ws.Ping(ctx); err != nil {
				t.Fatalf("ping after %v idle: %v", 3*testWriteTimeout, err)
			}
		})
	}

	t.Run("https/http2/stalled client", func(t *testing.T) {
		t.Parallel()
		s := startSite(t, "https")
		start := time.Now()
		c, sc := s.stallingH2Client(t)
		resp := h2Get(t, c, big+"&length")
		sc.stop.Store(true)
		waitFor(t, "the router to close the backend connection", func() bool { return s.be.conns.Load() == 0 })
		checkCutTime(t, start)
		readCut(t, &resumingReader{Reader: resp.Body, conn: sc}, stalledSize, nil)
		waitFor(t, "the router to forget the client connection", func() bool { return s.conns() == 0 })
	})

	t.Run("https/http2/stalled stream", func(t *testing.T) {
		t.Parallel()
		s := startSite(t, "https")
		c, _ := s.client(t, true)
		start := time.Now()
		resp := h2Get(t, c, big+"&length")
		waitFor(t, "the router to reset the stream", func() bool { return s.be.conns.Load() == 0 })
		checkCutTime(t, start)
		readCut(t, resp.Body, stalledSize, nil)
		// The connection goes on.
		resp = h2Get(t, c, "/?n=5")
		if got, err := io.ReadAll(resp.Body); err != nil || string(got) != "01234" {
			t.Fatalf("next request: %q, %v", got, err)
		}
		if n := s.conns(); n != 1 {
			t.Fatalf("%d connections, want the one", n)
		}
	})

	t.Run("https/http2/slow reader", func(t *testing.T) {
		t.Parallel()
		s := startSite(t, "https")
		c, _ := s.client(t, true)
		readSlowly(t, h2Get(t, c, "/?n="+strconv.Itoa(slowSize)).Body, slowSize)
	})
}
