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
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

// TestWriteTimeout: a client that sends a request and stops reading is cut
// after the write timeout, abortively, with the backend connection of its
// response, which is not reused; a slow client that keeps reading is not
// cut, however long its download.
func TestWriteTimeout(t *testing.T) {
	// request sends a GET for n bytes on a new connection with a small
	// receive buffer, so the router's writes wait on the client soon.
	request := func(t *testing.T, addr, query string, n int) (net.Conn, *bufio.Reader) {
		t.Helper()
		conn := dialRouter(t, addr)
		if err := conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(conn, "GET /?n=%d%s HTTP/1.1\r\nHost: app.test\r\n\r\n", n, query); err != nil {
			t.Fatal(err)
		}
		return conn, bufio.NewReader(conn)
	}
	// plainFrontends' two servers, started with servePlain so that the
	// test can count their client connections.
	fronts := []struct {
		name    string
		noLoops bool
	}{
		{name: "loop"},
		{name: "fast", noLoops: true},
	}
	bodies := []struct {
		name  string
		query string
	}{
		{name: "content-length", query: "&length"},
		{name: "chunked"},
	}
	for _, fe := range fronts {
		for _, body := range bodies {
			t.Run(fe.name+"/"+body.name, func(t *testing.T) {
				t.Parallel()
				be := startBackend(t, "big", bigBody)
				rt := newRouter(t, Config{WriteTimeout: testWriteTimeout, ClientIdleTimeout: time.Minute})
				rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
				addr, fs := servePlain(t, rt, fe.noLoops)

				t.Run("stalled client", func(t *testing.T) {
					start := time.Now()
					conn, br := request(t, addr, body.query, stalledSize)
					waitFor(t, "the router to take the connection", func() bool { return clientConns(fs) == 1 })
					waitFor(t, "the router to close the stalled client", func() bool { return clientConns(fs) == 0 })
					checkCutTime(t, start)
					waitFor(t, "the backend connection to close", func() bool { return be.conns.Load() == 0 })
					conn.SetReadDeadline(time.Now().Add(10 * time.Second))
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("read response head: %v", err)
					}
					defer resp.Body.Close()
					readCut(t, resp.Body, stalledSize, syscall.ECONNRESET)
				})

				t.Run("next request", func(t *testing.T) {
					resp, got := get(t, newClient(t), addr, "app.test", "/?n=5&length")
					if resp.StatusCode != 200 || got != "01234" {
						t.Fatalf("got %d %q", resp.StatusCode, got)
					}
				})

				t.Run("slow reader", func(t *testing.T) {
					conn, br := request(t, addr, body.query, slowSize)
					conn.SetReadDeadline(time.Now().Add(time.Minute))
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("read response head: %v", err)
					}
					defer resp.Body.Close()
					readSlowly(t, resp.Body, slowSize)
				})
			})
		}
	}
}

// httpsConns counts rt's HTTPS client connections.
func httpsConns(rt *Router) int {
	rt.httpsWrites.mu.Lock()
	defer rt.httpsWrites.mu.Unlock()
	n := 0
	for c := range rt.httpsWrites.set {
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

// httpsSite is a router serving app.test over HTTPS with its own backend,
// so that a test can count their connections.
type httpsSite struct {
	be    *backend
	rt    *Router
	addr  string
	roots *x509.CertPool
	// wsOpen counts the backend's websockets still open.
	wsOpen atomic.Int64
}

func startHTTPSSite(t *testing.T) *httpsSite {
	t.Helper()
	s := &httpsSite{}
	mux := http.NewServeMux()
	mux.Handle("/", bigBody)
	// /ws sends n MiB in messages of 1 MiB, or without n until a write
	// fails.
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		s.wsOpen.Add(1)
		defer s.wsOpen.Add(-1)
		defer c.CloseNow()
		msg := bytes.Repeat([]byte("0123456789abcdef"), 64<<10)
		n := -1
		if r.URL.Query().Has("n") {
			n, _ = strconv.Atoi(r.URL.Query().Get("n"))
		}
		for i := 0; n < 0 || i < n; i++ {
			if c.Write(r.Context(), websocket.MessageBinary, msg) != nil {
				return
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	})
	s.be = startBackend(t, "big", mux)
	certPEM, keyPEM := selfSigned(t, "app.test")
	crt, err := ParseCertificate(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s.rt = newRouter(t, Config{TLS: true, WriteTimeout: testWriteTimeout, ClientIdleTimeout: time.Minute})
	tbl := appTable(map[string][]*backend{"app": {s.be}})
	tbl.Certs = map[string]*tls.Certificate{"app.test": crt}
	s.rt.SetTable(tbl)
	_, s.addr = serveTLSRouter(t, s.rt, nil)
	s.roots = x509.NewCertPool()
	s.roots.AppendCertsFromPEM(certPEM)
	return s
}

// dial opens a TLS connection to the site speaking proto, with a small
// receive buffer, so the router's writes wait on the client soon.
func (s *httpsSite) dial(t *testing.T, proto string) (*tls.Conn, *stallingConn) {
	t.Helper()
	conn := dialRouter(t, s.addr)
	if err := conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	sc := &stallingConn{Conn: conn, resumed: make(chan struct{})}
	t.Cleanup(sc.resume)
	tc := tls.Client(sc, &tls.Config{ServerName: "app.test", RootCAs: s.roots, NextProtos: []string{proto}})
	tc.SetDeadline(time.Now().Add(time.Minute))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != proto {
		t.Fatalf("negotiated %q, want %q", got, proto)
	}
	return tc, sc
}

// get sends a GET for target on a new HTTP/1.1 connection and reads the
// response head; what follows it is for br.
func (s *httpsSite) get(t *testing.T, target string, header string) (resp *http.Response, br *bufio.Reader) {
	t.Helper()
	tc, _ := s.dial(t, "http/1.1")
	if _, err := fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: app.test\r\n%s\r\n", target, header); err != nil {
		t.Fatal(err)
	}
	br = bufio.NewReader(tc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response head: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, br
}

// client returns a client of the site, speaking HTTP/2 if h2, else
// HTTP/1.1.
func (s *httpsSite) client(t *testing.T, h2 bool) *http.Client {
	t.Helper()
	tr := &http.Transport{
		ForceAttemptHTTP2: h2,
		TLSClientConfig:   &tls.Config{RootCAs: s.roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// stallingH2Client returns an HTTP/2 client whose one connection is the
// stallingConn returned. Its stream windows are larger than a stalled
// download, so that only the socket holds it back.
func (s *httpsSite) stallingH2Client(t *testing.T) (*http.Client, *stallingConn) {
	t.Helper()
	tc, sc := s.dial(t, "h2")
	tc.SetDeadline(time.Time{})
	tr := &http.Transport{
		ForceAttemptHTTP2: true,
		DialTLSContext:    func(context.Context, string, string) (net.Conn, error) { return tc, nil },
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

// TestWriteTimeoutHTTPS: as TestWriteTimeout, over HTTPS. A client that
// stops reading its connection is cut after the write timeout, abortively,
// with the backend connection of its response, whether the connection
// carries HTTP/1.1, HTTP/2 or a websocket; an HTTP/2 stream left unread
// while the connection is read is reset, the connection going on; slow
// readers are not cut.
func TestWriteTimeoutHTTPS(t *testing.T) {
	big := "/?n=" + strconv.Itoa(stalledSize)
	upgrade := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	cuts := []struct {
		name string
		// stall sends a request for more than the buffers hold, and
		// stops reading; the reader it returns reads on.
		stall func(t *testing.T, s *httpsSite) io.Reader
		// size is the response's length, -1 when endless.
		size int64
		// want is the client's error once the router cut the connection.
		want error
		// released reports the backend's side closed; nil: its
		// connections.
		released func(s *httpsSite) bool
	}{
		{
			name: "http1.1 content-length",
			stall: func(t *testing.T, s *httpsSite) io.Reader {
				resp, _ := s.get(t, big+"&length", "")
				return resp.Body
			},
			size: stalledSize, want: syscall.ECONNRESET,
		},
		{
			name: "http1.1 chunked",
			stall: func(t *testing.T, s *httpsSite) io.Reader {
				resp, _ := s.get(t, big, "")
				return resp.Body
			},
			size: stalledSize, want: syscall.ECONNRESET,
		},
		{
			name: "http2",
			stall: func(t *testing.T, s *httpsSite) io.Reader {
				c, sc := s.stallingH2Client(t)
				resp := h2Get(t, c, big+"&length")
				sc.stop.Store(true)
				return &resumingReader{Reader: resp.Body, conn: sc}
			},
			size: stalledSize,
		},
		{
			name: "websocket",
			stall: func(t *testing.T, s *httpsSite) io.Reader {
				resp, br := s.get(t, "/ws", upgrade)
				if resp.StatusCode != http.StatusSwitchingProtocols {
					t.Fatalf("upgrade answered %d", resp.StatusCode)
				}
				waitFor(t, "the backend to take the websocket", func() bool { return s.wsOpen.Load() == 1 })
				return br
			},
			size: -1, want: syscall.ECONNRESET,
			released: func(s *httpsSite) bool { return s.wsOpen.Load() == 0 },
		},
	}
	for _, tc := range cuts {
		t.Run(tc.name+"/stalled client", func(t *testing.T) {
			t.Parallel()
			s := startHTTPSSite(t)
			start := time.Now()
			body := tc.stall(t, s)
			released := func() bool { return s.be.conns.Load() == 0 }
			if tc.released != nil {
				released = func() bool { return tc.released(s) }
			}
			waitFor(t, "the router to close the backend connection", released)
			checkCutTime(t, start)
			readCut(t, body, tc.size, tc.want)
			waitFor(t, "the router to forget the client connection", func() bool { return httpsConns(s.rt) == 0 })
		})
	}

	t.Run("http2/stalled stream", func(t *testing.T) {
		t.Parallel()
		s := startHTTPSSite(t)
		c := s.client(t, true)
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
		if n := httpsConns(s.rt); n != 1 {
			t.Fatalf("%d connections, want the one", n)
		}
	})

	slow := []struct {
		name string
		// body sends a request for slowSize bytes and returns its body.
		body func(t *testing.T, s *httpsSite) io.Reader
	}{
		{
			name: "http1.1",
			body: func(t *testing.T, s *httpsSite) io.Reader {
				resp, _ := s.get(t, "/?n="+strconv.Itoa(slowSize), "")
				return resp.Body
			},
		},
		{
			name: "http2",
			body: func(t *testing.T, s *httpsSite) io.Reader {
				return h2Get(t, s.client(t, true), "/?n="+strconv.Itoa(slowSize)).Body
			},
		},
		{
			name: "websocket",
			body: func(t *testing.T, s *httpsSite) io.Reader {
				c := s.client(t, false)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				t.Cleanup(cancel)
				ws, _, err := websocket.Dial(ctx, "wss://app.test/ws?n="+strconv.Itoa(slowSize/slowBurst), &websocket.DialOptions{HTTPClient: c})
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				t.Cleanup(func() { ws.CloseNow() })
				ws.SetReadLimit(2 * slowBurst)
				return &wsReader{ctx: ctx, c: ws}
			},
		},
	}
	for _, tc := range slow {
		t.Run(tc.name+"/slow reader", func(t *testing.T) {
			t.Parallel()
			s := startHTTPSSite(t)
			readSlowly(t, tc.body(t, s), slowSize)
		})
	}
}

// wsReader reads the messages of a websocket as one stream, which ends
// when the other end closes normally.
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
