package router

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// exchange sends raw on a new connection to addr and reads one response
// to method, which must come within d.
func exchange(t *testing.T, addr, raw, method string, d time.Duration) (*http.Response, string) {
	t.Helper()
	conn := dialRouter(t, addr)
	conn.SetDeadline(time.Now().Add(d))
	go io.WriteString(conn, raw)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response within %v: %v", d, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

// appRouter is a router serving app.test from be.
func appRouter(t *testing.T, be *backend) *Router {
	t.Helper()
	rt := newRouter(t, Config{})
	rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
	return rt
}

// echoNamed answers with the request's values of the headers named in
// the query's h parameters, joined by "|".
func echoNamed() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var vals []string
		for _, h := range r.URL.Query()["h"] {
			vals = append(vals, strings.Join(r.Header.Values(h), ","))
		}
		io.WriteString(w, strings.Join(vals, "|"))
	})
}

// TestHeadLimits: every front end checks a head's fields against the
// names its Connection header lists once, with both bounded, so a head of
// many fields costs linear work. A 60 KB head of empty fields with
// "Connection: close, x" took 5 s of an event loop before.
func TestHeadLimits(t *testing.T) {
	var fields, names strings.Builder
	for i := 0; fields.Len() < 60<<10; i++ {
		fmt.Fprintf(&fields, "%d:\r\n", i)
	}
	for i := 0; names.Len() < 30<<10; i++ {
		fmt.Fprintf(&names, "n%d, ", i)
	}
	var hundred strings.Builder
	for i := 0; i < 96; i++ { // with Host and the rest, 100 fields
		fmt.Fprintf(&hundred, "F%d: v\r\n", i)
	}
	const get = "GET /?h=X-A&h=X-B&h=X-C&h=F3 HTTP/1.1\r\nHost: app.test\r\n"
	tests := []struct {
		name   string
		raw    string
		status int
		body   string
	}{
		{name: "60 KB of empty fields, Connection naming one", raw: get + "Connection: close, x\r\n" + fields.String() + "\r\n", status: 431},
		{name: "30 KB of Connection names", raw: get + "Connection: " + names.String() + "\r\n" + fields.String()[:strings.LastIndex(fields.String()[:30<<10], "\n")+1] + "\r\n", status: 400},
		{name: "17 Connection names", raw: get + "Connection: " + strings.Repeat("x-a, ", 17) + "\r\n\r\n", status: 400},
		{name: "names listed are dropped", raw: get + "Connection: X-A,close, x-c\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\n", status: 200, body: "|2||"},
		{name: "100 fields, 16 names", raw: get + "Connection: close," + strings.Repeat(" x-a,", 15) + "x-c\r\nX-B: 2\r\nX-C: 3\r\n" + hundred.String() + "\r\n", status: 200, body: "|2||v"},
	}
	be := startBackend(t, "web", echoNamed())
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			addr := fe.start(t, appRouter(t, be))
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					resp, body := exchange(t, addr, tc.raw, http.MethodGet, 2*time.Second)
					if resp.StatusCode != tc.status || (tc.status == 200 && body != tc.body) {
						t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
					}
				})
			}
		})
	}
}

// scriptedBackend answers each request with what answer returns, parts
// written apart, 50ms between them; it closes the connection after the
// answer unless keepAlive.
func scriptedBackend(t *testing.T, keepAlive bool, answer func(*http.Request) []string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					for i, p := range answer(req) {
						if i > 0 {
							time.Sleep(50 * time.Millisecond)
						}
						io.WriteString(c, p)
					}
					if !keepAlive {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// TestPoolTakesNoLeftovers: a backend connection goes back to the pool
// only when nothing of it is left unread, so bytes a backend sent past its
// response never become another request's response. Before, an HTTP/1.0
// client's chunked response left its trailer section behind (the next
// request got a 502), and a body sent on HEAD, or past Content-Length,
// reached the next client as its response (a Set-Cookie of the backend's
// choosing).
func TestPoolTakesNoLeftovers(t *testing.T) {
	const injected = "HTTP/1.1 200 OK\r\nSet-Cookie: session=evil\r\nContent-Length: 8\r\n\r\ninjected"
	addr := scriptedBackend(t, true, func(r *http.Request) []string {
		switch r.URL.Path {
		case "/chunked":
			// As a conforming server answers HTTP/1.0 through a proxy.
			return []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"}
		case "/head":
			return []string{"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + injected}
		case "/204":
			return []string{"HTTP/1.1 204 No Content\r\n\r\n" + injected}
		case "/extra":
			return []string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + injected}
		case "/late":
			return []string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", injected}
		}
		return []string{"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhonest"}
	})
	tests := []struct {
		name, method, path, proto string
	}{
		{name: "chunked to http/1.0", method: "GET", path: "/chunked", proto: "HTTP/1.0"},
		{name: "body on head", method: "HEAD", path: "/head", proto: "HTTP/1.1"},
		{name: "body on 204", method: "GET", path: "/204", proto: "HTTP/1.1"},
		{name: "more than content-length", method: "GET", path: "/extra", proto: "HTTP/1.1"},
		{name: "more than content-length, later", method: "GET", path: "/late", proto: "HTTP/1.1"},
	}
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					front := fe.start(t, rawRouter(t, addr))
					exchange(t, front, tc.method+" "+tc.path+" "+tc.proto+"\r\nHost: app.test\r\n\r\n", tc.method, 5*time.Second)
					time.Sleep(200 * time.Millisecond) // the late bytes are in
					// Next requests, through each of the router's pools:
					// the event loops' and the goroutines'.
					for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
						resp, body := exchange(t, front, "GET / "+proto+"\r\nHost: app.test\r\n\r\n", "GET", 5*time.Second)
						if resp.StatusCode != 200 || body != "honest" || resp.Header.Get("Set-Cookie") != "" {
							t.Fatalf("%s next request: got %d %q, Set-Cookie %q", proto, resp.StatusCode, body, resp.Header.Get("Set-Cookie"))
						}
					}
				})
			}
		})
	}
}

// TestRequestTrailers: a chunked request body's trailer section is read
// strictly, each line ending in CRLF, and dropped; a malformed one is
// answered 400. Before, it went to the backend as it came, bare LF, CR or
// NUL included, for the backend to read in its own way.
func TestRequestTrailers(t *testing.T) {
	be := startBackend(t, "web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d", body, len(r.Trailer))
	}))
	const post = "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
	tests := []struct {
		name     string
		trailers string
		status   int
	}{
		{name: "none", trailers: "\r\n", status: 200},
		{name: "dropped", trailers: "X-T: 1\r\nX-U: 2\r\n\r\n", status: 200},
		{name: "bare LF", trailers: "X-T: 1\nX-Evil: 2\r\n\r\n", status: 400},
		{name: "CR CR LF", trailers: "X-T: 1\r\r\n\r\n", status: 400},
		{name: "bare CR", trailers: "X-T: 1\rX-Evil: 2\r\n\r\n", status: 400},
		{name: "NUL", trailers: "X-T: 1\x00\r\n\r\n", status: 400},
		{name: "no colon", trailers: "X-T\r\n\r\n", status: 400},
		{name: "bare LF at the end", trailers: "X-T: 1\r\n\n", status: 400},
	}
	for _, fe := range plainFrontends {
		t.Run(fe.name, func(t *testing.T) {
			addr := fe.start(t, appRouter(t, be))
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					resp, body := exchange(t, addr, post+tc.trailers, http.MethodPost, 5*time.Second)
					if resp.StatusCode != tc.status || (tc.status == 200 && body != "hello 0") {
						t.Fatalf("got %d %q, want %d", resp.StatusCode, body, tc.status)
					}
				})
			}
		})
	}
}

// TestHostValidation: every front end answers 400 to a Host that is not a
// host name or address with an optional port of digits, rather than route
// by the part before the last colon and forward the rest to the app (which
// builds links, password-reset ones included, from it).
func TestHostValidation(t *testing.T) {
	tests := []struct {
		name   string
		host   string
		status int
	}{
		{name: "plain", host: "app.test", status: 200},
		{name: "port", host: "app.test:80", status: 200},
		{name: "trailing dot, upper case", host: "APP.test.", status: 200},
		{name: "ipv6 address", host: "[::1]:80", status: 404},
		{name: "userinfo after port", host: "app.test:@evil.example", status: 400},
		{name: "userinfo", host: "app.test@evil.example", status: 400},
		{name: "port not digits", host: "app.test:8o", status: 400},
		{name: "slash", host: "app.test/x", status: 400},
		{name: "unclosed bracket", host: "[::1", status: 400},
		{name: "space", host: "app.test evil.example", status: 400},
	}
	// Not a Go backend: net/http would refuse some of these itself.
	be := scriptedBackend(t, true, func(*http.Request) []string {
		return []string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}
	})
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			addr := fe.start(t, rawRouter(t, be))
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					resp, body := exchange(t, addr, "GET / HTTP/1.1\r\nHost: "+tc.host+"\r\n\r\n", http.MethodGet, 5*time.Second)
					if resp.StatusCode != tc.status {
						t.Fatalf("got %d %q, want %d", resp.StatusCode, body, tc.status)
					}
				})
			}
		})
	}
}

// TestPipelinedDuringSlowResponses: requests that arrive while earlier
// pipelined ones wait on a slow backend are all answered, in order. Before,
// on the goroutine path, the watcher of the second slow request replaced
// the bytes the first one's watcher had read (a whole request) with its
// own.
func TestPipelinedDuringSlowResponses(t *testing.T) {
	const slow = 2500 * time.Millisecond // past slowResponse and a sweep
	be := startBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow") {
			time.Sleep(slow)
		}
		io.WriteString(w, r.URL.Path)
	}))
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			t.Parallel()
			conn := dialRouter(t, fe.start(t, appRouter(t, be)))
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			req := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: app.test\r\n\r\n" }
			io.WriteString(conn, req("/slow1")+req("/slow2"))
			time.Sleep(slow * 7 / 10) // the first one's watcher reads this
			io.WriteString(conn, req("/3"))
			time.Sleep(slow) // and the second one's this
			io.WriteString(conn, req("/4"))
			time.Sleep(slow * 7 / 10)
			io.WriteString(conn, req("/5"))
			readBodies(t, bufio.NewReader(conn), "/slow1", "/slow2", "/3", "/4", "/5")
		})
	}
}

// TestRequestFraming: a request's Content-Length is digits only, and an
// HTTP/1.0 client, which cannot know it, is not sent 100 Continue.
func TestRequestFraming(t *testing.T) {
	be := startBackend(t, "echo", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	}))
	tests := []struct {
		name   string
		raw    string
		status int
		body   string
	}{
		{name: "length", raw: "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 02\r\n\r\nok", status: 200, body: "ok"},
		{name: "plus sign", raw: "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: +2\r\n\r\nok", status: 400},
		{name: "minus zero", raw: "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: -0\r\n\r\n", status: 400},
		{name: "http/1.0 expecting 100-continue", raw: "POST / HTTP/1.0\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok"},
	}
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			addr := fe.start(t, appRouter(t, be))
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					resp, body := exchange(t, addr, tc.raw, http.MethodPost, 5*time.Second)
					if resp.StatusCode != tc.status || (tc.status == 200 && body != tc.body) {
						t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
					}
				})
			}
		})
	}
}

// TestClientProxyHeadersDropped: forwarding headers of other proxies, and
// names with an underscore that frameworks may read as X-Forwarded-*, are
// not passed on beside the router's own.
func TestClientProxyHeadersDropped(t *testing.T) {
	dropped := []string{"Forwarded", "X-Forwarded-Port", "X-Forwarded-Ssl", "X-Forwarded-Prefix", "X-Real-Ip", "X_Forwarded_Proto", "X-Real_Ip"}
	be := startBackend(t, "web", echoNamed())
	var raw, query strings.Builder
	raw.WriteString("X-Kept: yes\r\n")
	query.WriteString("/?h=X-Kept&h=X-Forwarded-Proto")
	for _, h := range dropped {
		fmt.Fprintf(&raw, "%s: spoofed\r\n", h)
		fmt.Fprintf(&query, "&h=%s", h)
	}
	want := "yes|http" + strings.Repeat("|", len(dropped))
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			addr := fe.start(t, appRouter(t, be))
			resp, body := exchange(t, addr, "GET "+query.String()+" HTTP/1.1\r\nHost: app.test\r\n"+raw.String()+"\r\n", http.MethodGet, 5*time.Second)
			if resp.StatusCode != 200 || body != want {
				t.Fatalf("got %d %q, want %q (kept, the router's proto, then none of %v)", resp.StatusCode, body, want, dropped)
			}
		})
	}
}
