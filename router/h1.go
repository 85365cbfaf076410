package router

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// This file speaks HTTP/1.1 to backends directly on pooled connections: the
// request is written straight from the incoming one, and the response head
// is parsed straight into the client's response headers, with one string
// allocation for the whole head.

const maxHeadBytes = 64 << 10

// bodyError is a failure reading the client's request body.
type bodyError struct{ err error }

func (e bodyError) Error() string { return "read request body: " + e.err.Error() }
func (e bodyError) Unwrap() error { return e.err }

// writeRequest writes req to a backend: hop-by-hop headers dropped,
// X-Forwarded-* and X-Request-Id set, the body streamed with its framing.
func writeRequest(bw *bufio.Writer, req *http.Request, id, upgrade string, bufs *sync.Pool) error {
	uri := req.RequestURI
	if uri == "" || (uri[0] != '/' && uri != "*") {
		uri = req.URL.RequestURI()
	}
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(req.Host)
	bw.WriteString("\r\n")

	// The names Connection lists, parsed once (checkRequest bounds them).
	var connArr [maxConnTokens]string
	conn := connArr[:0]
	for _, v := range req.Header["Connection"] {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); isConnName(t) && len(conn) < len(connArr) {
				conn = append(conn, t)
			}
		}
	}
	for k, vv := range req.Header {
		if skipRequestHeader(k) || slices.ContainsFunc(conn, func(t string) bool { return strings.EqualFold(t, k) }) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("X-Forwarded-For: ")
	for _, v := range req.Header["X-Forwarded-For"] {
		bw.WriteString(v)
		bw.WriteString(", ")
	}
	bw.WriteString(clientIP(req.RemoteAddr))
	if req.TLS != nil {
		bw.WriteString("\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: ")
	} else {
		bw.WriteString("\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ")
	}
	bw.WriteString(req.Host)
	bw.WriteString("\r\nX-Request-Id: ")
	bw.WriteString(id)
	bw.WriteString("\r\n")
	if upgrade != "" {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.WriteString(upgrade)
		bw.WriteString("\r\n")
	}

	hasBody := req.Body != nil && req.Body != http.NoBody
	switch {
	case !hasBody:
		if req.ContentLength == 0 && (req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch) {
			bw.WriteString("Content-Length: 0\r\n")
		}
		bw.WriteString("\r\n")
		return bw.Flush()
	case req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		var nb [20]byte
		bw.Write(strconv.AppendInt(nb[:0], req.ContentLength, 10))
		bw.WriteString("\r\n\r\n")
		n, err := copyRequestBody(bw, bw, req.Body, bufs)
		if err != nil {
			return err
		}
		if n != req.ContentLength {
			return bodyError{io.ErrUnexpectedEOF}
		}
		return bw.Flush()
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		cw := httputil.NewChunkedWriter(bw)
		if _, err := copyRequestBody(cw, bw, req.Body, bufs); err != nil {
			return err
		}
		if err := cw.Close(); err != nil {
			return fmt.Errorf("end chunked body: %w", err)
		}
		bw.WriteString("\r\n")
		return bw.Flush()
	}
}

// copyRequestBody streams the client's body to the backend, flushing after
// every read so a slow upload flows instead of waiting in a buffer.
func copyRequestBody(dst io.Writer, bw *bufio.Writer, body io.Reader, bufs *sync.Pool) (int64, error) {
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	var n int64
	for {
		nr, er := body.Read(buf)
		if nr > 0 {
			if _, ew := dst.Write(buf[:nr]); ew != nil {
				return n, fmt.Errorf("send request body: %w", ew)
			}
			n += int64(nr)
			if ew := bw.Flush(); ew != nil {
				return n, fmt.Errorf("send request body: %w", ew)
			}
		}
		if er == io.EOF {
			return n, nil
		}
		if er != nil {
			return n, bodyError{er}
		}
	}
}

// skipRequestHeader reports headers the router does not pass on as they are:
// hop-by-hop ones, framing it redoes, and those it sets itself.
func skipRequestHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Expect",
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id",
		"Forwarded", "X-Real-Ip":
		return true
	}
	// Other proxies' forwarding headers, and names with an underscore
	// (proxyHeader).
	return strings.HasPrefix(k, "X-Forwarded-") || strings.IndexByte(k, '_') >= 0
}

// readHead reads a response head up to and without its blank line.
func readHead(br *bufio.Reader) (string, error) {
	head, discard, err := peekHead(br)
	if err != nil {
		return "", err
	}
	s := string(head)
	br.Discard(discard)
	return s, nil
}

// peekHead finds a whole head (start line and fields, without the blank
// line) in br. Usually the head stays in br's buffer, valid until br is next
// read, and discard is how much to skip past it; a head larger than the
// buffer is copied out and already consumed (discard 0).
func peekHead(br *bufio.Reader) (head []byte, discard int, err error) {
	if _, err := br.Peek(1); err != nil {
		return nil, 0, fmt.Errorf("read head: %w: %w", errNothingRead, err)
	}
	for {
		if head, next, ok := bufferedHead(br); ok {
			return head, next, nil
		}
		if br.Buffered() == br.Size() {
			head, err := readLongHead(br)
			return head, 0, err
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, 0, fmt.Errorf("read head: %w", err)
		}
	}
}

// bufferedHead is peekHead for a head already whole in br's buffer,
// without reading; ok is false when the buffer holds less.
func bufferedHead(br *bufio.Reader) (head []byte, discard int, ok bool) {
	buf, _ := br.Peek(br.Buffered())
	end, next := headEnd(buf)
	if end < 0 {
		return nil, 0, false
	}
	return buf[:end], next, true
}

// readLongHead reads a head larger than the connection's buffer.
func readLongHead(br *bufio.Reader) ([]byte, error) {
	var acc []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("read head: %w", err)
		}
		if len(acc) > 0 && acc[len(acc)-1] == '\n' && (string(line) == "\r\n" || string(line) == "\n") {
			return acc, nil
		}
		acc = append(acc, line...)
		if len(acc) > maxHeadBytes {
			return nil, fmt.Errorf("read head: over %d bytes: %w", maxHeadBytes, errHeadTooLarge)
		}
	}
}

// headEnd finds the blank line ending a head: end is where the head's last
// line ends, next where the body starts; both -1 when not found yet.
func headEnd(buf []byte) (end, next int) {
	off := 0
	for {
		i := bytes.IndexByte(buf[off:], '\n')
		if i < 0 {
			return -1, -1
		}
		i += off
		switch {
		case i+1 < len(buf) && buf[i+1] == '\n':
			return i + 1, i + 2
		case i+2 < len(buf) && buf[i+1] == '\r' && buf[i+2] == '\n':
			return i + 1, i + 3
		case i+2 >= len(buf):
			return -1, -1
		}
		off = i + 1
	}
}

// respHead is what the proxy needs to know of a response beyond its headers.
type respHead struct {
	status    int
	length    int64 // -1 when unknown
	chunked   bool
	keepAlive bool
	upgrade   string
	trailer   bool // a chunked response announcing trailers
	// For the fast path: the status code and reason, the offset of the
	// first header line, and the header names Connection lists.
	statusLine []byte
	fields     int
	conn       connNames
}

// parseHead parses a response head into h (the client's response headers)
// and rh. Header values are substrings of head: no allocation per value.
func parseHead(head string, h http.Header, rh *respHead) error {
	line, rest := cutLine(head)
	if len(line) < 12 || !strings.HasPrefix(line, "HTTP/1.") || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return fmt.Errorf("parse status line %q: %w", line, ErrBadUpstreamResponse)
	}
	code, err := strconv.Atoi(line[9:12])
	if err != nil || code < 100 {
		return fmt.Errorf("parse status code %q: %w", line[9:12], ErrBadUpstreamResponse)
	}
	rh.status, rh.length = code, -1
	http10 := line[7] == '0'
	rh.keepAlive = !http10
	closeConn := false

	vals := make([]string, strings.Count(rest, "\n")+1)
	vi := 0
	var connTokens []string
	for rest != "" {
		line, rest = cutLine(rest)
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return fmt.Errorf("parse header: obsolete line folding: %w", ErrBadUpstreamResponse)
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return fmt.Errorf("parse header line %q: %w", line, ErrBadUpstreamResponse)
		}
		key, ok := canonicalKey(line[:colon])
		if !ok {
			return fmt.Errorf("parse header name %q: %w", line[:colon], ErrBadUpstreamResponse)
		}
		v := strings.Trim(line[colon+1:], " \t")
		switch key {
		case "Connection":
			for t := range strings.SplitSeq(v, ",") {
				t = strings.TrimSpace(t)
				switch {
				case strings.EqualFold(t, "close"):
					closeConn = true
				case strings.EqualFold(t, "keep-alive"):
					rh.keepAlive = true
				case t != "" && !strings.EqualFold(t, "upgrade"):
					connTokens = append(connTokens, t)
				}
			}
			continue
		case "Keep-Alive", "Proxy-Connection", "Te":
			continue
		case "Trailer":
			rh.trailer = true
		case "Upgrade":
			rh.upgrade = v
			continue
		case "Transfer-Encoding":
			if strings.EqualFold(v, "chunked") {
				rh.chunked = true
			} else if !strings.EqualFold(v, "identity") {
				// Unknown codings: the body runs to the connection's end.
				closeConn = true
			}
			continue
		case "Content-Length":
			n, ok := parseLength(v)
			if !ok || (rh.length >= 0 && n != rh.length) {
				return fmt.Errorf("parse content-length %q: %w", v, ErrBadUpstreamResponse)
			}
			if rh.length >= 0 {
				continue
			}
			rh.length = n
		}
		vals[vi] = v
		if old := h[key]; old != nil {
			h[key] = append(old, v)
		} else {
			h[key] = vals[vi : vi+1 : vi+1]
		}
		vi++
	}
	for _, t := range connTokens {
		delete(h, textproto.CanonicalMIMEHeaderKey(t))
	}
	if rh.chunked {
		delete(h, "Content-Length")
		rh.length = -1
	} else if rh.trailer {
		delete(h, "Trailer")
		rh.trailer = false
	}
	if closeConn {
		rh.keepAlive = false
	}
	return nil
}

// readTrailers reads the trailer section after a chunked body and passes the
// fields on as trailers.
func readTrailers(br *bufio.Reader, h http.Header) error {
	for i := 0; ; i++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("read trailers: %w", err)
		}
		s := strings.TrimRight(string(line), "\r\n")
		if s == "" {
			return nil
		}
		if i > 100 {
			return fmt.Errorf("read trailers: too many: %w", ErrBadUpstreamResponse)
		}
		k, v, ok := strings.Cut(s, ":")
		if !ok {
			return fmt.Errorf("parse trailer %q: %w", s, ErrBadUpstreamResponse)
		}
		if key, ok := canonicalKey(k); ok {
			h.Add(http.TrailerPrefix+key, strings.TrimSpace(v))
		}
	}
}

func cutLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		line, rest = s, ""
	} else {
		line, rest = s[:i], s[i+1:]
	}
	return strings.TrimSuffix(line, "\r"), rest
}

// canonicalKey returns the canonical form of a header name without
// allocating for common names or names already canonical.
func canonicalKey(raw string) (string, bool) {
	if k, ok := commonHeaders[raw]; ok {
		return k, true
	}
	upper := true
	canonical := true
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !validHeaderNameByte(c) {
			return "", false
		}
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
		}
		upper = c == '-'
	}
	if canonical {
		return raw, true
	}
	return textproto.CanonicalMIMEHeaderKey(raw), true
}

func validHeaderNameByte(c byte) bool {
	// RFC 9110 token characters.
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// commonHeaders maps frequent header names, as servers spell them, to their
// canonical form.
var commonHeaders = func() map[string]string {
	names := []string{
		"Accept-Ranges", "Age", "Cache-Control", "Connection", "Content-Encoding",
		"Content-Language", "Content-Length", "Content-Type", "Date", "Etag",
		"Expires", "Keep-Alive", "Last-Modified", "Location", "Server", "Set-Cookie",
		"Strict-Transport-Security", "Trailer", "Transfer-Encoding", "Upgrade", "Vary",
		"Via", "Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options",
		"X-Request-Id", "Access-Control-Allow-Origin", "Content-Security-Policy",
		"Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions",
		"Content-Disposition", "Referrer-Policy", "Proxy-Connection", "Te",
	}
	m := make(map[string]string, 2*len(names))
	for _, n := range names {
		m[n] = n
		m[strings.ToLower(n)] = n
	}
	m["ETag"] = "Etag"
	m["WWW-Authenticate"] = "Www-Authenticate"
	m["Sec-WebSocket-Accept"] = "Sec-Websocket-Accept"
	m["Sec-WebSocket-Protocol"] = "Sec-Websocket-Protocol"
	m["Sec-WebSocket-Extensions"] = "Sec-Websocket-Extensions"
	return m
}()
