package router

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestLoopKeepsWhatItServes checks which requests the event loops serve
// themselves and which they hand to the goroutine path, by who owns the
// client connection after the response: the "loop" frontend's tests pass
// either way.
func TestLoopKeepsWhatItServes(t *testing.T) {
	tests := []struct {
		name     string
		req      string
		status   int
		wantLoop bool
	}{
		{name: "keep-alive GET", req: "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n", status: 200, wantLoop: true},
		{name: "HEAD", req: "HEAD / HTTP/1.1\r\nHost: app.test\r\n\r\n", status: 200, wantLoop: true},
		{name: "body", req: "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\n\r\nx", status: 200},
		{name: "unknown host", req: "GET / HTTP/1.1\r\nHost: nope.test\r\n\r\n", status: 404},
	}
	be := startBackend(t, "web", nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := newRouter(t, Config{})
			rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
			addr, fs := servePlain(t, rt, false)
			if fs.loops == nil {
				t.Fatal("event loops did not start")
			}
			conn := dialRouter(t, addr)
			if _, err := io.WriteString(conn, tc.req); err != nil {
				t.Fatal(err)
			}
			method, _, _ := strings.Cut(tc.req, " ")
			resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.status)
			}
			fs.mu.Lock()
			goroutines := len(fs.conns)
			fs.mu.Unlock()
			inLoop := fs.loops.live()
			if tc.wantLoop && (inLoop != 1 || goroutines != 0) || !tc.wantLoop && (inLoop != 0 || goroutines != 1) {
				t.Fatalf("connection in a loop: %d, on a goroutine: %d; want it in a loop: %v", inLoop, goroutines, tc.wantLoop)
			}
		})
	}
}
