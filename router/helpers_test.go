package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testLogger logs to the test's output at debug level when -v is given.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// syncBuffer is an access log sink safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newRouter builds a router for a test.
func newRouter(t *testing.T, cfg Config) *Router {
	t.Helper()
	rt, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("new router: %v", err)
	}
	return rt
}

// serveRouter runs rt on a loopback listener with its own HTTP server and
// returns the address; the router is drained at cleanup.
func serveRouter(t *testing.T, rt *Router) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.ServeListeners(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("router did not stop")
		}
	})
	return ln.Addr().String()
}

// frontend is a way of putting the router in front of a client: its own
// HTTP/1.x server (plain HTTP listener) or net/http through ServeHTTP.
type frontend struct {
	name  string
	start func(t *testing.T, rt *Router) string
}

var frontends = []frontend{
	{name: "loop", start: serveRouter},
	{name: "fast", start: func(t *testing.T, rt *Router) string {
		t.Helper()
		rt.noLoops = true
		return serveRouter(t, rt)
	}},
	{name: "nethttp", start: func(t *testing.T, rt *Router) string {
		t.Helper()
		srv := httptest.NewServer(rt)
		t.Cleanup(func() {
			srv.Close()
			rt.CloseIdleConnections()
		})
		return srv.Listener.Addr().String()
	}},
}

// backend is a real HTTP server on loopback.
type backend struct {
	name     string
	addr     string
	srv      *http.Server
	hits     atomic.Int64
	conns    atomic.Int64 // open connections
	stopOnce sync.Once
	done     chan struct{}
}

// startBackend starts a backend; a nil handler answers "NAME" with 200.
func startBackend(t *testing.T, name string, h http.Handler) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return startBackendOn(t, name, ln, h)
}

func startBackendOn(t *testing.T, name string, ln net.Listener, h http.Handler) *backend {
	t.Helper()
	b := &backend{name: name, addr: ln.Addr().String(), done: make(chan struct{})}
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, name)
		})
	}
	b.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.hits.Add(1)
			w.Header().Set("X-Backend", name)
			h.ServeHTTP(w, r)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				b.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				b.conns.Add(-1)
			}
		},
	}
	go func() {
		defer close(b.done)
		if err := b.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("backend %s: %v", name, err)
		}
	}()
	t.Cleanup(func() { b.stop(t) })
	return b
}

// stop shuts the backend down gracefully, as an app does on SIGTERM.
func (b *backend) stop(t *testing.T) {
	t.Helper()
	b.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.srv.Shutdown(ctx); err != nil {
			t.Errorf("stop backend %s: %v", b.name, err)
			b.srv.Close()
		}
		<-b.done
	})
}

// appTable builds a table with one app per name, each at NAME.test.
func appTable(apps map[string][]*backend) *Table {
	t := &Table{Apps: map[string]*App{}, Hosts: map[string]string{}}
	for name, bs := range apps {
		app := &App{Name: name}
		for i, b := range bs {
			app.Backends = append(app.Backends, Backend{ID: fmt.Sprintf("%s.web.%d", name, i+1), Addr: b.addr})
		}
		t.Apps[name] = app
		t.Hosts[name+".test"] = name
	}
	return t
}

// newClient returns a keep-alive client; cleanup closes its connections.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// get sends a GET for host to the router at addr.
func get(t *testing.T, c *http.Client, addr, host, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("get %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

// waitFor polls cond until it holds or 10 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
