package router

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berthhq/berth/internal/testenv"
)

// plainFrontends are the plain-HTTP listener's two servers: the event loops
// and the goroutine per connection.
var plainFrontends = frontends[:2]

// dialRouter opens a raw client connection to the router at addr.
func dialRouter(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closedWithin reports whether the router closes conn within d, reading and
// discarding whatever comes first.
func closedWithin(t *testing.T, conn net.Conn, d time.Duration) bool {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestClientTimeouts(t *testing.T) {
	const (
		headerTimeout = 300 * time.Millisecond
		idleTimeout   = 2 * time.Second
	)
	tests := []struct {
		name string
		send string // what the client sends before it stalls
		// within is how soon the router must close the connection: a
		// stalled head goes well before the idle timeout would close it.
		within time.Duration
	}{
		{name: "slowloris head", send: "GET / HTTP/1.1\r\nHost: app.test\r\nX-A: ", within: idleTimeout * 7 / 10},
		{name: "idle keep-alive", send: "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n", within: 5 * time.Second},
		{name: "idle before any request", within: 5 * time.Second},
	}
	be := startBackend(t, "web", nil)
	for _, fe := range plainFrontends {
		t.Run(fe.name, func(t *testing.T) {
			t.Parallel()
			rt := newRouter(t, Config{ReadHeaderTimeout: headerTimeout, ClientIdleTimeout: idleTimeout})
			rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
			addr := fe.start(t, rt)
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					conn := dialRouter(t, addr)
					if _, err := io.WriteString(conn, tc.send); err != nil {
						t.Fatal(err)
					}
					if !closedWithin(t, conn, tc.within) {
						t.Fatalf("connection still open after %v", tc.within)
					}
				})
			}
			// An active client is not cut: requests spaced over the header
			// timeout but under the idle timeout, each head sent whole.
			c := newClient(t)
			for range 4 {
				if resp, body := get(t, c, addr, "app.test", "/"); resp.StatusCode != 200 || body != "web" {
					t.Fatalf("got %d %q", resp.StatusCode, body)
				}
				time.Sleep(2 * headerTimeout)
			}
		})
	}
}

func TestHTTPSRedirect(t *testing.T) {
	be := startBackend(t, "web", nil)
	certPEM, keyPEM, _ := testenv.SelfSigned(t, "secure.test", "*.wild.test")
	crt, err := ParseCertificate(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, host, target string
		status                     int
		location                   string
	}{
		{name: "get", method: "GET", host: "secure.test", target: "/p?q=1", status: 301, location: "https://secure.test/p?q=1"},
		{name: "head", method: "HEAD", host: "Secure.Test:80", target: "/", status: 301, location: "https://secure.test/"},
		{name: "post", method: "POST", host: "secure.test", target: "/form", status: 308, location: "https://secure.test/form"},
		{name: "wildcard", method: "GET", host: "a.wild.test", target: "/", status: 301, location: "https://a.wild.test/"},
		{name: "no certificate", method: "GET", host: "plain.test", target: "/", status: 200},
		{name: "acme challenge", method: "GET", host: "secure.test", target: acmeChallengePrefix + "token", status: 404},
	}
	frontsTLS := append(plainFrontends[:len(plainFrontends):len(plainFrontends)], frontends[2])
	for _, fe := range frontsTLS {
		t.Run(fe.name, func(t *testing.T) {
			// ACME on, so challenge paths have their responder; the
			// directory is never reached.
			rt := newRouter(t, Config{TLS: true, ACME: true, ACMEDirectoryURL: "http://127.0.0.1:1/directory"})
			tbl := appTable(map[string][]*backend{"app": {be}})
			tbl.Hosts["secure.test"] = "app"
			tbl.Hosts["a.wild.test"] = "app"
			tbl.Hosts["plain.test"] = "app"
			tbl.Certs = map[string]*tls.Certificate{"secure.test": crt, "*.wild.test": crt}
			rt.SetTable(tbl)
			addr := fe.start(t, rt)
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					conn := dialRouter(t, addr)
					br := bufio.NewReader(conn)
					req, err := http.NewRequest(tc.method, "http://"+tc.host+tc.target, nil)
					if err != nil {
						t.Fatal(err)
					}
					if tc.method == "POST" {
						req.Body = io.NopCloser(strings.NewReader("a=1"))
						req.ContentLength = 3
					}
					conn.SetDeadline(time.Now().Add(10 * time.Second))
					if err := req.Write(conn); err != nil {
						t.Fatal(err)
					}
					resp, err := http.ReadResponse(br, req)
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
						t.Fatalf("got %d to %q, want %d to %q", resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location)
					}
				})
			}
		})
	}
}

// servePlain runs rt's plain-HTTP server on a loopback listener, with the
// event loops unless noLoops, and returns its address and the server, for
// tests that look at its connections. It is shut down at cleanup.
func servePlain(t *testing.T, rt *Router, noLoops bool) (string, *fastServer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := newFastServer(rt, ln, noLoops)
	go fs.serve() //nolint:errcheck // ends at shutdown
	t.Cleanup(func() {
		done := make(chan struct{})
		close(done)
		fs.shutdown(done)
		rt.CloseIdleConnections()
	})
	return ln.Addr().String(), fs
}

// clientConns counts fs's client connections, in its loops and on
// goroutines.
func clientConns(fs *fastServer) int64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.loops.live() + int64(len(fs.conns))
}
