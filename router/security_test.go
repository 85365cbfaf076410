package router

import (
	"bufio"
	"fmt"
	"io"
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
			rt := newRouter(t, Config{})
			rt.SetTable(appTable(map[string][]*backend{"app": {be}}))
			addr := fe.start(t, rt)
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
