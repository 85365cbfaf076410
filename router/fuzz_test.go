package router

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
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

// FuzzChunkScan feeds chunked bodies to the event loop's scanner: no
// panic; the end it finds is where a chunked reader ends; and the answer
// does not depend on how the bytes are split across reads.
func FuzzChunkScan(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"3;ext=1\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\nextra",
		"a\nabcdefghij\n0\n\n",
		"A\r\nabcdefghij\r\n0\r\n\r\n",
		"0\r\n\r\n",
		"fffffffffffffffff\r\n",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, split uint8) {
		var whole chunkScan
		n, done, err := whole.feed(body)
		if n > len(body) || n < 0 {
			t.Fatalf("used %d of %d bytes", n, len(body))
		}
		var parts chunkScan
		step := int(split%7) + 1
		used, pdone := 0, false
		var perr error
		for off := 0; off < len(body) && !pdone && perr == nil; off += step {
			var k int
			k, pdone, perr = parts.feed(body[off:min(off+step, len(body))])
			used += k
		}
		if done != pdone || (err == nil) != (perr == nil) || (err == nil && used != n) {
			t.Fatalf("split reads disagree: whole (%d, %v, %v), split by %d (%d, %v, %v)", n, done, err, step, used, pdone, perr)
		}
		if !done || err != nil {
			return
		}
		// What the scanner took for a whole body, a chunked reader reads
		// to the end with its trailers.
		br := bufio.NewReader(bytes.NewReader(body[:n]))
		if _, err := io.Copy(io.Discard, httputil.NewChunkedReader(br)); err != nil {
			t.Fatalf("chunked reader rejects %q: %v", body[:n], err)
		}
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("trailers of %q: %v", body[:n], err)
			}
			if strings.TrimRight(line, "\r\n") == "" {
				break
			}
		}
		if br.Buffered() != 0 {
			t.Fatalf("scanner stopped early in %q", body[:n])
		}
	})
}
