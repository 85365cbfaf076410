package router

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// FuzzParseRequestHead feeds request heads to the fast path's parser: it
// must not panic, and what it accepts net/http must accept too (so the
// router is never laxer than a standard server about framing).
func FuzzParseRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a.test\r\n",
		"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n",
		"POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n",
		"GET http://a.test/p HTTP/1.1\r\nHost: b\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive, X-Y\r\nX-Y: 1\r\n",
		"GET /chat HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		rq := fastReq{head: head}
		status, _ := parseRequestHead(&rq)
		if status != 0 {
			return
		}
		if rq.chunked && rq.length >= 0 {
			t.Fatalf("accepted both framings: %q", head)
		}
		// A head as peekHead returns it ends with its last line's newline.
		raw := append([]byte(nil), head...)
		if !bytes.HasSuffix(raw, []byte("\n")) {
			raw = append(raw, "\r\n"...)
		}
		raw = append(raw, "\r\n"...)
		if _, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw))); err != nil && rq.hasBody() {
			t.Fatalf("accepted a request with a body that net/http rejects (%v): %q", err, head)
		}
	})
}

// FuzzScanResponseHead feeds response heads to the fast path's parser and
// writer: no panic, and a parsed length is never negative.
func FuzzScanResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n",
		"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n",
		"HTTP/1.1 200 OK\r\nConnection: close, X-A\r\nX-A: 1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		var rh respHead
		if err := scanResponseHead(head, &rh); err != nil {
			return
		}
		if rh.length < -1 || rh.chunked && rh.length != -1 {
			t.Fatalf("bad framing %+v for %q", rh, head)
		}
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		for _, mode := range []int{bodyNone, bodyLength, bodyChunked, bodyRaw} {
			writeClientHead(bw, head, &rh, mode, mode == bodyRaw)
		}
		bw.Flush()
	})
}
