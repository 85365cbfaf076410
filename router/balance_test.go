package router

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestWebsocketEcho(t *testing.T) {
	be := startBackend(t, "ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}))
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			rt := newRouter(t, Config{})
			rt.SetTable(appTable(map[string][]*backend{"chat": {be}}))
			addr := fe.start(t, rt)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/socket", &websocket.DialOptions{Host: "chat.test", HTTPClient: newClient(t)})
			if err != nil {
				t.Fatalf("dial through router: %v", err)
			}
			defer c.CloseNow()
			c.SetReadLimit(1 << 20)
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d", resp.StatusCode)
			}
			for _, msg := range []string{"hello", strings.Repeat("x", 100_000), "bye"} {
				if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
					t.Fatalf("write: %v", err)
				}
				_, got, err := c.Read(ctx)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if string(got) != "echo: "+msg {
					t.Fatalf("got %d bytes %.20q, want echo of %.20q", len(got), got, msg)
				}
			}
			if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
				t.Fatalf("close: %v", err)
			}
		})
	}
}

// TestRolloutUnderLoad replaces an app's backends several times, the way
// deploy does (add new, remove old, stop old), while 64 connections send
// requests, and requires every request to succeed.
func TestRolloutUnderLoad(t *testing.T) {
	for _, policy := range []Policy{RoundRobin, LeastConn} {
		t.Run(policy.String(), func(t *testing.T) {
			rt := newRouter(t, Config{Policy: policy})
			addr := serveRouter(t, rt)
			slow := func(name string) *backend {
				return startBackend(t, name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/slow" {
						time.Sleep(20 * time.Millisecond)
					}
					io.WriteString(w, name)
				}))
			}
			current := []*backend{slow("v1a"), slow("v1b")}
			rt.SetTable(appTable(map[string][]*backend{"app": current}))

			const workers = 64
			const maxPerWorker = 3000
			var ok, failed atomic.Int64
			var firstErr atomic.Value
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i := 0; i < workers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tr := &http.Transport{MaxIdleConnsPerHost: 1}
					defer tr.CloseIdleConnections()
					c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
					path := "/"
					if i%4 == 0 {
						path = "/slow"
					}
					for n := 0; n < maxPerWorker; n++ {
						select {
						case <-stop:
							return
						default:
						}
						req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
						req.Host = "app.test"
						resp, err := c.Do(req)
						if err == nil {
							_, err = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if err == nil && resp.StatusCode != 200 {
								err = errors.New(resp.Status)
							}
						}
						if err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err)
							continue
						}
						ok.Add(1)
					}
				}()
			}

			for v := 2; v <= 4; v++ {
				time.Sleep(150 * time.Millisecond)
				next := []*backend{slow("v" + string(rune('0'+v)) + "a"), slow("v" + string(rune('0'+v)) + "b")}
				// Deploy's order: add the new instances, then remove the old
				// ones, then stop them.
				rt.SetTable(appTable(map[string][]*backend{"app": append(append([]*backend{}, current...), next...)}))
				time.Sleep(100 * time.Millisecond)
				rt.SetTable(appTable(map[string][]*backend{"app": next}))
				for _, b := range current {
					b.stop(t)
				}
				current = next
			}
			time.Sleep(150 * time.Millisecond)
			close(stop)
			wg.Wait()

			if n := failed.Load(); n > 0 {
				t.Fatalf("%d of %d requests failed during rollouts; first: %v", n, n+ok.Load(), firstErr.Load())
			}
			if ok.Load() < workers {
				t.Fatalf("only %d requests ran", ok.Load())
			}
			for _, b := range current {
				if b.hits.Load() == 0 {
					t.Errorf("final backend %s got no requests", b.name)
				}
			}
			t.Logf("%d requests, 0 failed, over 3 rollouts", ok.Load())
		})
	}
}

// TestPassiveHealth points an app at a dead backend beside a live one: no
// request fails, the dead one is left out, and it is used again once it
// comes back.
func TestPassiveHealth(t *testing.T) {
	live := startBackend(t, "live", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()

	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			rt := newRouter(t, Config{FailTimeout: 200 * time.Millisecond})
			rt.SetTable(&Table{
				Apps: map[string]*App{"app": {Name: "app", Backends: []Backend{
					{ID: "dead", Addr: deadAddr}, {ID: "live", Addr: live.addr},
				}}},
				Hosts: map[string]string{"app.test": "app"},
			})
			addr := fe.start(t, rt)
			c := newClient(t)
			for i := 0; i < 20; i++ {
				resp, body := get(t, c, addr, "app.test", "/")
				if resp.StatusCode != 200 || body != "live" {
					t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
				}
			}
			up := rt.upstreams[deadAddr]
			if up.up(time.Now().UnixNano()) {
				t.Fatalf("dead backend not marked down")
			}

			// The backend comes back on the same address.
			ln2, err := net.Listen("tcp", deadAddr)
			if err != nil {
				t.Skipf("cannot rebind %s to revive the backend: %v", deadAddr, err)
			}
			revived := startBackendOn(t, "revived", ln2, nil)
			waitFor(t, "revived backend to get traffic", func() bool {
				resp, _ := get(t, c, addr, "app.test", "/")
				return resp.StatusCode == 200 && revived.hits.Load() > 0
			})
			revived.stop(t)
		})
	}
}

func TestAllBackendsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	rt := newRouter(t, Config{})
	rt.SetTable(&Table{
		Apps:  map[string]*App{"app": {Name: "app", Backends: []Backend{{ID: "dead", Addr: deadAddr}}}},
		Hosts: map[string]string{"app.test": "app"},
	})
	addr := serveRouter(t, rt)
	resp, body := get(t, newClient(t), addr, "app.test", "/")
	if resp.StatusCode != 503 || !strings.Contains(body, "no healthy instance") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

func TestLeastConn(t *testing.T) {
	hold := make(chan struct{})
	entered := make(chan string, 1)
	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hold" {
				entered <- name
				<-hold
			}
			io.WriteString(w, name)
		})
	}
	a := startBackend(t, "a", handler("a"))
	b := startBackend(t, "b", handler("b"))
	rt := newRouter(t, Config{Policy: LeastConn})
	rt.SetTable(appTable(map[string][]*backend{"app": {a, b}}))
	addr := serveRouter(t, rt)
	c := newClient(t)

	held := make(chan struct{})
	go func() {
		defer close(held)
		get(t, c, addr, "app.test", "/hold")
	}()
	busy := <-entered
	for i := 0; i < 10; i++ {
		_, body := get(t, c, addr, "app.test", "/")
		if body == busy {
			t.Fatalf("request %d went to %s, which has a request in flight", i, busy)
		}
	}
	close(hold)
	<-held
}

// TestRemovedBackendFinishesInFlight removes a backend while it serves a
// request: the request completes, later ones go elsewhere, and the router
// keeps no connection to the removed backend.
func TestRemovedBackendFinishesInFlight(t *testing.T) {
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			hold := make(chan struct{})
			entered := make(chan struct{}, 1)
			old := startBackend(t, "old", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/hold" {
					entered <- struct{}{}
					<-hold
				}
				io.WriteString(w, "old")
			}))
			neu := startBackend(t, "new", nil)
			rt := newRouter(t, Config{})
			rt.SetTable(appTable(map[string][]*backend{"app": {old}}))
			addr := fe.start(t, rt)
			c := newClient(t)
			get(t, c, addr, "app.test", "/") // a pooled connection to old

			result := make(chan string, 1)
			go func() {
				resp, body := get(t, c, addr, "app.test", "/hold")
				result <- resp.Status + " " + body
			}()
			<-entered
			rt.SetTable(appTable(map[string][]*backend{"app": {neu}}))
			for i := 0; i < 5; i++ {
				if _, body := get(t, c, addr, "app.test", "/"); body != "new" {
					t.Fatalf("request after removal went to %q", body)
				}
			}
			close(hold)
			if got := <-result; got != "200 OK old" {
				t.Fatalf("in-flight request: %s", got)
			}
			waitFor(t, "connections to the removed backend to close", func() bool { return old.conns.Load() == 0 })
		})
	}
}

func TestAccessLog(t *testing.T) {
	be := startBackend(t, "web", nil)
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			var log syncBuffer
			rt := newRouter(t, Config{AccessLog: &log})
			rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
			addr := fe.start(t, rt)
			c := newClient(t)
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/a/b?c=d", nil)
			req.Host = "app.test"
			req.Header.Set("X-Request-Id", "req-77")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			get(t, c, addr, "nope.test", "/missing")

			var lines []string
			waitFor(t, "two access log lines", func() bool {
				lines = strings.Split(strings.TrimSpace(log.String()), "\n")
				return len(lines) >= 2
			})
			tests := []struct {
				name string
				line string
				want []string
			}{
				{name: "proxied", line: lines[0], want: []string{"127.0.0.1", "app.test", `"GET /a/b?c=d HTTP/1.1"`, " 200 3 ", be.addr, "req-77"}},
				{name: "unknown host", line: lines[1], want: []string{"nope.test", `"GET /missing HTTP/1.1"`, " 404 "}},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					f := strings.Fields(tc.line)
					if len(f) != 11 {
						t.Fatalf("want 11 fields, got %d: %q", len(f), tc.line)
					}
					if _, err := time.Parse("2006-01-02T15:04:05.000Z", f[0]); err != nil {
						t.Errorf("time field: %v", err)
					}
					for _, w := range tc.want {
						if !strings.Contains(tc.line, w) {
							t.Errorf("line %q lacks %q", tc.line, w)
						}
					}
				})
			}
		})
	}
}

// TestGracefulDrain cancels Serve while a request is in flight: it
// completes, and Serve returns after it.
func TestGracefulDrain(t *testing.T) {
	hold := make(chan struct{})
	entered := make(chan struct{}, 1)
	be := startBackend(t, "web", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-hold
		io.WriteString(w, "done")
	}))
	rt := newRouter(t, Config{})
	rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- rt.ServeListeners(ctx, ln, nil) }()
	c := newClient(t)
	result := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		req.Host = "app.test"
		resp, err := c.Do(req)
		if err != nil {
			result <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- string(body)
	}()
	<-entered
	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(hold)
	if got := <-result; got != "done" {
		t.Fatalf("in-flight request got %q", got)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener still accepting after Serve returned")
	}
}

// TestDrainWithWebsocket checks an open websocket does not hold the drain
// for the whole shutdown timeout: it is closed once requests are done.
func TestDrainWithWebsocket(t *testing.T) {
	be := startBackend(t, "ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Read(r.Context())
	}))
	rt := newRouter(t, Config{ShutdownTimeout: 5 * time.Minute})
	rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- rt.ServeListeners(ctx, ln, nil) }()
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer dcancel()
	c, _, err := websocket.Dial(dctx, "ws://"+ln.Addr().String()+"/", &websocket.DialOptions{Host: "app.test", HTTPClient: newClient(t)})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("drain waited on an open websocket")
	}
	if _, _, err := c.Read(dctx); err == nil {
		t.Fatal("websocket still open after the router stopped")
	}
}

// TestLoneBackendRecovers: an app whose only backend refused a connection
// is tried again at once, not left on 503 for the whole fail timeout.
func TestLoneBackendRecovers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			rt := newRouter(t, Config{FailTimeout: time.Hour})
			rt.SetTable(&Table{
				Apps:  map[string]*App{"app": {Name: "app", Backends: []Backend{{ID: "web.1", Addr: addr}}}},
				Hosts: map[string]string{"app.test": "app"},
			})
			raddr := fe.start(t, rt)
			c := newClient(t)
			if resp, _ := get(t, c, raddr, "app.test", "/"); resp.StatusCode != 503 {
				t.Fatalf("down backend: status %d, want 503", resp.StatusCode)
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Skipf("cannot rebind %s: %v", addr, err)
			}
			be := startBackendOn(t, "back", ln, nil)
			defer be.stop(t)
			if resp, body := get(t, c, raddr, "app.test", "/"); resp.StatusCode != 200 || body != "back" {
				t.Fatalf("backend back up: %d %q, want 200 at once", resp.StatusCode, body)
			}
		})
	}
}
