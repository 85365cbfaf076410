package router

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRouting(t *testing.T) {
	web := startBackend(t, "web", nil)
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			rt := newRouter(t, Config{})
			tbl := appTable(map[string][]*backend{"shop": {web}, "empty": nil})
			tbl.Hosts["www.Example.COM"] = "shop"
			tbl.Hosts["*.wild.test"] = "shop"
			tbl.Hosts["dangling.test"] = "nosuchapp"
			rt.SetTable(tbl)
			addr := fe.start(t, rt)
			c := newClient(t)

			tests := []struct {
				name     string
				host     string
				status   int
				contains string
			}{
				{name: "app host", host: "shop.test", status: 200, contains: "web"},
				{name: "port and case ignored", host: "SHOP.test:8080", status: 200, contains: "web"},
				{name: "custom domain", host: "www.example.com", status: 200, contains: "web"},
				{name: "wildcard", host: "a.wild.test", status: 200, contains: "web"},
				{name: "wildcard is one label", host: "a.b.wild.test", status: 404, contains: "no app is served"},
				{name: "unknown host", host: "nope.test", status: 404, contains: `no app is served at host "nope.test"`},
				{name: "host of unknown app", host: "dangling.test", status: 404, contains: "no app is served"},
				{name: "app without instances", host: "empty.test", status: 503, contains: `app "empty" has no healthy instance`},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					resp, body := get(t, c, addr, tc.host, "/")
					if resp.StatusCode != tc.status || !strings.Contains(body, tc.contains) {
						t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, body, tc.status, tc.contains)
					}
				})
			}
		})
	}
}

// echoHeaders answers with the request's headers and Host as JSON.
var echoHeaders = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := r.Header.Clone()
	h.Set("X-Seen-Host", r.Host)
	h.Set("X-Seen-Uri", r.RequestURI)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Connection", "X-Secret")
	w.Header().Set("X-Secret", "hop")
	w.Header().Set("Keep-Alive", "timeout=5")
	json.NewEncoder(w).Encode(h)
})

func TestForwardedHeaders(t *testing.T) {
	be := startBackend(t, "echo", echoHeaders)
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			rt := newRouter(t, Config{})
			rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
			addr := fe.start(t, rt)
			c := newClient(t)

			tests := []struct {
				name   string
				header map[string]string
				check  func(t *testing.T, seen http.Header)
			}{
				{
					name: "set by the router",
					check: func(t *testing.T, seen http.Header) {
						if got := seen.Get("X-Forwarded-For"); got != "127.0.0.1" {
							t.Errorf("X-Forwarded-For = %q", got)
						}
						if got := seen.Get("X-Forwarded-Proto"); got != "http" {
							t.Errorf("X-Forwarded-Proto = %q", got)
						}
						if got := seen.Get("X-Forwarded-Host"); got != "app.test" {
							t.Errorf("X-Forwarded-Host = %q", got)
						}
						if got := seen.Get("X-Request-Id"); len(got) != 20 {
							t.Errorf("X-Request-Id = %q, want a 20-character id", got)
						}
						if got := seen.Get("X-Seen-Host"); got != "app.test" {
							t.Errorf("Host = %q", got)
						}
						if got := seen.Get("X-Seen-Uri"); got != "/p/a%20th?q=1&r=2" {
							t.Errorf("request URI = %q", got)
						}
					},
				},
				{
					name: "client values appended or replaced",
					header: map[string]string{
						"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
						"X-Forwarded-Host": "evil.test", "X-Request-Id": "abc-123",
					},
					check: func(t *testing.T, seen http.Header) {
						if got := seen.Get("X-Forwarded-For"); got != "203.0.113.7, 127.0.0.1" {
							t.Errorf("X-Forwarded-For = %q", got)
						}
						if got := seen.Get("X-Forwarded-Proto"); got != "http" {
							t.Errorf("X-Forwarded-Proto = %q", got)
						}
						if got := seen.Get("X-Forwarded-Host"); got != "app.test" {
							t.Errorf("X-Forwarded-Host = %q", got)
						}
						if got := seen.Get("X-Request-Id"); got != "abc-123" {
							t.Errorf("X-Request-Id = %q", got)
						}
					},
				},
				{
					name: "hop-by-hop dropped",
					header: map[string]string{
						"Connection": "X-Private", "X-Private": "secret", "Keep-Alive": "timeout=5",
						"Proxy-Authorization": "Basic Zm9vOmJhcg==", "X-Kept": "yes",
					},
					check: func(t *testing.T, seen http.Header) {
						for _, k := range []string{"X-Private", "Keep-Alive", "Proxy-Authorization"} {
							if v := seen.Get(k); v != "" {
								t.Errorf("%s reached the backend: %q", k, v)
							}
						}
						if seen.Get("X-Kept") != "yes" {
							t.Errorf("X-Kept lost: %v", seen)
						}
					},
				},
				{
					name:   "insane request id replaced",
					header: map[string]string{"X-Request-Id": "bad id with spaces"},
					check: func(t *testing.T, seen http.Header) {
						if got := seen.Get("X-Request-Id"); got == "bad id with spaces" || len(got) != 20 {
							t.Errorf("X-Request-Id = %q", got)
						}
					},
				},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/p/a%20th?q=1&r=2", nil)
					req.Host = "app.test"
					for k, v := range tc.header {
						req.Header.Set(k, v)
					}
					resp, err := c.Do(req)
					if err != nil {
						t.Fatalf("get: %v", err)
					}
					defer resp.Body.Close()
					var seen http.Header
					if err := json.NewDecoder(resp.Body).Decode(&seen); err != nil {
						t.Fatalf("decode: %v", err)
					}
					tc.check(t, seen)
					if resp.Header.Get("X-Secret") != "" || resp.Header.Get("Keep-Alive") != "" {
						t.Errorf("hop-by-hop response headers reached the client: %v", resp.Header)
					}
					if resp.Header.Get("Content-Type") != "application/json" {
						t.Errorf("Content-Type = %q", resp.Header.Get("Content-Type"))
					}
				})
			}
		})
	}
}

// bodyBackend serves the body tests.
var bodyBackend = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/echo":
		// Echo the body back with its length and framing seen.
		data, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Len", fmt.Sprint(len(data)))
		w.Header().Set("X-Te", strings.Join(r.TransferEncoding, ","))
		w.Header().Set("X-Cl", fmt.Sprint(r.ContentLength))
		w.Write(data)
	case "/big":
		// 5 MiB of a known pattern, with Content-Length.
		w.Header().Set("Content-Length", fmt.Sprint(5<<20))
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for i := 0; i < (5<<20)/len(chunk); i++ {
			w.Write(chunk)
		}
	case "/chunked-trailer":
		w.Header().Set("Trailer", "X-Sum")
		w.Write([]byte("part1,"))
		w.(http.Flusher).Flush()
		w.Write([]byte("part2"))
		w.Header().Set("X-Sum", "42")
	case "/nocontent":
		w.WriteHeader(http.StatusNoContent)
	case "/head":
		w.Header().Set("Content-Length", "1234")
	case "/notype":
		w.Header()["Content-Type"] = nil
		w.Write([]byte("<html>sniff me</html>"))
	}
})

func TestBodies(t *testing.T) {
	be := startBackend(t, "body", bodyBackend)
	big := bytes.Repeat([]byte("berth!"), 300_000) // 1.8 MB
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			rt := newRouter(t, Config{})
			rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
			addr := fe.start(t, rt)
			c := newClient(t)
			do := func(t *testing.T, req *http.Request) (*http.Response, []byte) {
				t.Helper()
				req.Host = "app.test"
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
				}
				defer resp.Body.Close()
				data, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("read body: %v", err)
				}
				return resp, data
			}

			t.Run("large body with length", func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/echo", bytes.NewReader(big))
				resp, data := do(t, req)
				if resp.StatusCode != 200 || !bytes.Equal(data, big) || resp.Header.Get("X-Cl") != fmt.Sprint(len(big)) {
					t.Fatalf("status %d, %d bytes back of %d, X-Cl %s", resp.StatusCode, len(data), len(big), resp.Header.Get("X-Cl"))
				}
			})
			t.Run("chunked request body", func(t *testing.T) {
				pr, pw := io.Pipe()
				go func() {
					for i := 0; i < 10; i++ {
						pw.Write(big[:100_000])
					}
					pw.Close()
				}()
				req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/echo", pr)
				resp, data := do(t, req)
				if resp.StatusCode != 200 || len(data) != 1_000_000 || resp.Header.Get("X-Te") != "chunked" {
					t.Fatalf("status %d, %d bytes, te %q", resp.StatusCode, len(data), resp.Header.Get("X-Te"))
				}
			})
			t.Run("empty post", func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/echo", http.NoBody)
				resp, data := do(t, req)
				if resp.StatusCode != 200 || len(data) != 0 || resp.Header.Get("X-Len") != "0" {
					t.Fatalf("status %d, %d bytes", resp.StatusCode, len(data))
				}
			})
			t.Run("expect continue", func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/echo", bytes.NewReader(big[:5000]))
				req.Header.Set("Expect", "100-continue")
				resp, data := do(t, req)
				if resp.StatusCode != 200 || len(data) != 5000 {
					t.Fatalf("status %d, %d bytes", resp.StatusCode, len(data))
				}
			})
			t.Run("large response", func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/big", nil)
				resp, data := do(t, req)
				want := sha256.Sum256(bytes.Repeat([]byte("0123456789abcdef"), (5<<20)/16))
				if resp.StatusCode != 200 || sha256.Sum256(data) != want {
					t.Fatalf("status %d, %d bytes, content differs", resp.StatusCode, len(data))
				}
			})
			t.Run("chunked response with trailer", func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/chunked-trailer", nil)
				resp, data := do(t, req)
				if string(data) != "part1,part2" || resp.Trailer.Get("X-Sum") != "42" {
					t.Fatalf("body %q, trailer %v", data, resp.Trailer)
				}
			})
			t.Run("no content", func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/nocontent", nil)
				resp, data := do(t, req)
				if resp.StatusCode != 204 || len(data) != 0 {
					t.Fatalf("status %d, body %q", resp.StatusCode, data)
				}
			})
			t.Run("head", func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodHead, "http://"+addr+"/head", nil)
				resp, data := do(t, req)
				if resp.StatusCode != 200 || len(data) != 0 || resp.ContentLength != 1234 {
					t.Fatalf("status %d, length %d, body %q", resp.StatusCode, resp.ContentLength, data)
				}
			})
			t.Run("no content type stays so", func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/notype", nil)
				resp, data := do(t, req)
				if ct := resp.Header.Get("Content-Type"); ct != "" || string(data) != "<html>sniff me</html>" {
					t.Fatalf("Content-Type %q, body %q", ct, data)
				}
			})
			t.Run("connection reused", func(t *testing.T) {
				before := be.conns.Load()
				for i := 0; i < 20; i++ {
					req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/echo", nil)
					if resp, _ := do(t, req); resp.StatusCode != 200 {
						t.Fatalf("status %d", resp.StatusCode)
					}
				}
				if after := be.conns.Load(); after > before+1 {
					t.Fatalf("backend connections grew from %d to %d over 20 sequential requests", before, after)
				}
			})
		})
	}
}

// TestStreaming checks a streamed response reaches the client while the
// backend is still writing, and that a client going away closes the
// backend's request.
func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	gone := make(chan struct{}, 4)
	be := startBackend(t, "stream", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		if r.URL.Path == "/wait" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			fmt.Fprint(w, "data: second\n\n")
			return
		}
		// /forever: tick until the client is gone.
		for {
			select {
			case <-r.Context().Done():
				gone <- struct{}{}
				return
			case <-time.After(10 * time.Millisecond):
				fmt.Fprint(w, "data: tick\n\n")
				w.(http.Flusher).Flush()
			}
		}
	}))
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			rt := newRouter(t, Config{})
			rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
			addr := fe.start(t, rt)

			t.Run("first event before the end", func(t *testing.T) {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(20 * time.Second))
				fmt.Fprint(conn, "GET /wait HTTP/1.1\r\nHost: app.test\r\n\r\n")
				br := bufio.NewReader(conn)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("read response: %v", err)
				}
				line, err := bufio.NewReader(resp.Body).ReadString('\n')
				if err != nil || line != "data: first\n" {
					t.Fatalf("first line %q, %v", line, err)
				}
				close(release)
				resp.Body.Close()
			})
			release = make(chan struct{})

			t.Run("client disconnect reaches the backend", func(t *testing.T) {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprint(conn, "GET /forever HTTP/1.1\r\nHost: app.test\r\n\r\n")
				buf := make([]byte, 100)
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := conn.Read(buf); err != nil {
					t.Fatalf("read: %v", err)
				}
				conn.Close()
				select {
				case <-gone:
				case <-time.After(10 * time.Second):
					t.Fatal("backend request still running 10s after the client left")
				}
			})
		})
	}
}

func TestMalformedRequests(t *testing.T) {
	be := startBackend(t, "web", nil)
	rt := newRouter(t, Config{})
	rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
	addr := serveRouter(t, rt)
	tests := []struct {
		name   string
		raw    string
		status int
	}{
		{name: "good", raw: "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n", status: 200},
		{name: "leading blank line", raw: "\r\nGET / HTTP/1.1\r\nHost: app.test\r\n\r\n", status: 200},
		{name: "absolute form", raw: "GET http://app.test/x HTTP/1.1\r\nHost: other\r\n\r\n", status: 200},
		{name: "http/1.0 without host", raw: "GET / HTTP/1.0\r\n\r\n", status: 404},
		{name: "no host", raw: "GET / HTTP/1.1\r\n\r\n", status: 400},
		{name: "two hosts", raw: "GET / HTTP/1.1\r\nHost: app.test\r\nHost: b.test\r\n\r\n", status: 400},
		{name: "bad request line", raw: "GET\r\nHost: app.test\r\n\r\n", status: 400},
		{name: "bad version", raw: "GET / HTTP/2.0\r\nHost: app.test\r\n\r\n", status: 505},
		{name: "smuggling framing", raw: "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400},
		{name: "two lengths", raw: "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", status: 400},
		{name: "unknown coding", raw: "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip\r\n\r\n", status: 501},
		{name: "folded header", raw: "GET / HTTP/1.1\r\nHost: app.test\r\nX-A: 1\r\n  2\r\n\r\n", status: 400},
		{name: "space in name", raw: "GET / HTTP/1.1\r\nHost: app.test\r\nX A: 1\r\n\r\n", status: 400},
		{name: "huge head", raw: "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", status: 431},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			go io.WriteString(conn, tc.raw)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}

// rawRouter is a router serving app.test from the backend at addr.
func rawRouter(t *testing.T, addr string) *Router {
	t.Helper()
	rt := newRouter(t, Config{})
	rt.SetTable(&Table{
		Apps:  map[string]*App{"app": {Name: "app", Backends: []Backend{{ID: "raw", Addr: addr}}}},
		Hosts: map[string]string{"app.test": "app"},
	})
	return rt
}

// rawBackend answers every connection with a fixed response, then closes
// it.
func rawBackend(t *testing.T, response string) string {
	t.Helper()
	return scriptedBackend(t, false, func(*http.Request) []string { return []string{response} })
}

func TestMalformedResponses(t *testing.T) {
	tests := []struct {
		name   string
		resp   string
		status int
		body   string
	}{
		{name: "good close-delimited", resp: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close", status: 200, body: "until close"},
		{name: "http/1.0 backend", resp: "HTTP/1.0 201 Created\r\nContent-Length: 2\r\n\r\nok", status: 201, body: "ok"},
		{name: "garbage", resp: "SSH-2.0-OpenSSH\r\n\r\n", status: 502},
		{name: "bad length", resp: "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", status: 502},
		{name: "signed length", resp: "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", status: 502},
		{name: "nothing", resp: "", status: 502},
		{name: "early hints dropped", resp: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", status: 200, body: "hi"},
	}
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					addr := fe.start(t, rawRouter(t, rawBackend(t, tc.resp)))
					resp, body := get(t, newClient(t), addr, "app.test", "/")
					if resp.StatusCode != tc.status || (tc.body != "" && body != tc.body) {
						t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
					}
				})
			}
		})
	}
}

func TestHTTP10KeepAlive(t *testing.T) {
	be := startBackend(t, "web", nil)
	rt := newRouter(t, Config{})
	rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
	addr := serveRouter(t, rt)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for i := 0; i < 2; i++ {
		fmt.Fprint(conn, "GET / HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "web" || resp.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("request %d: body %q, Connection %q", i, body, resp.Header.Get("Connection"))
		}
	}
}

// TestClientGoneBeforeResponse: a client that leaves while the backend is
// still working cancels the backend's request (on the fast path once the
// backend has been slow for about a second; see sweep).
func TestClientGoneBeforeResponse(t *testing.T) {
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			gone := make(chan struct{}, 1)
			entered := make(chan struct{}, 1)
			be := startBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				entered <- struct{}{}
				select {
				case <-r.Context().Done():
					gone <- struct{}{}
				case <-time.After(20 * time.Second):
				}
			}))
			rt := newRouter(t, Config{})
			rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
			addr := fe.start(t, rt)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
			<-entered
			conn.Close()
			select {
			case <-gone:
			case <-time.After(15 * time.Second):
				t.Fatal("backend request not cancelled after the client left")
			}
		})
	}
}

// TestSlowBackendKeepsClient: a slow answer with the client still there is
// delivered, and the connection carries a pipelined request sent meanwhile.
func TestSlowBackendKeepsClient(t *testing.T) {
	be := startBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(1500 * time.Millisecond)
		}
		io.WriteString(w, r.URL.Path)
	}))
	rt := newRouter(t, Config{})
	rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
	addr := serveRouter(t, rt)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprint(conn, "GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n")
	time.Sleep(1200 * time.Millisecond) // past slowResponse: a watcher reads the client now
	fmt.Fprint(conn, "GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
	readBodies(t, bufio.NewReader(conn), "/slow", "/next")
}

// readBodies reads a response for each of wants from br, in order, and
// fails unless each body is its want.
func readBodies(t *testing.T, br *bufio.Reader, wants ...string) {
	t.Helper()
	for _, want := range wants {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read response for %s: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}

func TestPipelining(t *testing.T) {
	be := startBackend(t, "echo", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	}))
	rt := newRouter(t, Config{})
	rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
	addr := serveRouter(t, rt)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// Three requests in one write, one with a body, then a HEAD.
	io.WriteString(conn, "GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\n"+
		"POST /2 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello"+
		"HEAD /3 HTTP/1.1\r\nHost: app.test\r\n\r\n"+
		"GET /4 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(conn)
	tests := []struct {
		name   string
		method string
		want   string
	}{
		{name: "get", method: "GET", want: "GET /1 "},
		{name: "post with body", method: "POST", want: "POST /2 hello"},
		{name: "head", method: "HEAD", want: ""},
		{name: "get closing", method: "GET", want: "GET /4 "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.ReadResponse(br, &http.Request{Method: tc.method})
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != tc.want {
				t.Fatalf("got %q, want %q", body, tc.want)
			}
		})
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed after Connection: close (%v)", err)
	}
}
