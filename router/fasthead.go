package router

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strconv"
)

// This file reads and writes HTTP/1.x heads for the fast path (fast.go) in
// place: fields are classified, validated and copied as byte slices of the
// connection buffers, without building header maps.

// Header classes the proxy treats specially.
const (
	hdrOther = iota
	hdrHost
	hdrContentLength
	hdrTransferEncoding
	hdrConnection
	hdrUpgrade
	hdrExpect
	hdrHopByHop // Keep-Alive, Proxy-Connection, Te, Trailer, Proxy-Authorization, Proxy-Authenticate
	hdrXFF
	hdrXForwarded // X-Forwarded-Proto, X-Forwarded-Host: replaced
	hdrRequestID
	hdrTrailer
)

// classify names a header's class without allocating.
func classify(name []byte) int {
	switch len(name) {
	case 2:
		if eqFold(name, "te") {
			return hdrHopByHop
		}
	case 4:
		if eqFold(name, "host") {
			return hdrHost
		}
	case 6:
		if eqFold(name, "expect") {
			return hdrExpect
		}
	case 7:
		switch {
		case eqFold(name, "upgrade"):
			return hdrUpgrade
		case eqFold(name, "trailer"):
			return hdrTrailer
		}
	case 10:
		switch {
		case eqFold(name, "connection"):
			return hdrConnection
		case eqFold(name, "keep-alive"):
			return hdrHopByHop
		}
	case 12:
		if eqFold(name, "x-request-id") {
			return hdrRequestID
		}
	case 14:
		if eqFold(name, "content-length") {
			return hdrContentLength
		}
	case 15:
		if eqFold(name, "x-forwarded-for") {
			return hdrXFF
		}
	case 16:
		if eqFold(name, "x-forwarded-host") {
			return hdrXForwarded
		}
		if eqFold(name, "proxy-connection") {
			return hdrHopByHop
		}
	case 17:
		switch {
		case eqFold(name, "transfer-encoding"):
			return hdrTransferEncoding
		case eqFold(name, "x-forwarded-proto"):
			return hdrXForwarded
		}
	case 18:
		if eqFold(name, "proxy-authenticate") {
			return hdrHopByHop
		}
	case 19:
		if eqFold(name, "proxy-authorization") {
			return hdrHopByHop
		}
	}
	return hdrOther
}

// Limits on a message's head. Header names a Connection header lists are
// dropped with it, so every field is checked against that list: a bounded
// list, parsed once per message, keeps the check linear in the head (an
// unbounded one made a 60 KB head cost seconds of an event loop).
const (
	// maxConnTokens is how many names a message's Connection headers may
	// list.
	maxConnTokens = 16
	// maxHeaderFields is how many header fields a request may carry.
	maxHeaderFields = 100

	pageTooManyFields    = "431 Request Header Fields Too Large: over 100 header fields\n"
	pageTooManyConnNames = "400 Bad Request: Connection lists over 16 header names\n"
	pageBadHost          = "400 Bad Request: malformed Host header: give a host name or address, and a port of digits if any\n"
)

// connNames is the set of header names a message's Connection headers
// list, besides close, keep-alive and upgrade; its slices point into the
// head.
type connNames struct {
	n     int
	names [maxConnTokens][]byte
}

// add records a name; false means the list is over maxConnTokens.
func (s *connNames) add(name []byte) bool {
	if s.n == len(s.names) {
		return false
	}
	s.names[s.n] = name
	s.n++
	return true
}

// has reports whether the set holds name, compared without case.
func (s *connNames) has(name []byte) bool {
	for _, t := range s.names[:s.n] {
		if asciiEqualFold(t, name) {
			return true
		}
	}
	return false
}

// asciiEqualFold compares two ASCII names without case.
func asciiEqualFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// eqFold compares an ASCII name with a lower-case constant.
func eqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// nextField returns the header line at off in head (without its line end),
// its name and trimmed value, and the offset of the next line; ok is false
// at the end or on a malformed line (bad is then true).
func nextField(head []byte, off int) (line, name, value []byte, next int, ok, bad bool) {
	if off >= len(head) {
		return nil, nil, nil, off, false, false
	}
	i := bytes.IndexByte(head[off:], '\n')
	if i < 0 {
		line, next = head[off:], len(head)
	} else {
		line, next = head[off:off+i], off+i+1
	}
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if len(line) == 0 {
		return nil, nil, nil, next, false, false
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
		return line, nil, nil, next, false, true
	}
	name = line[:colon]
	for _, c := range name {
		if !validHeaderNameByte(c) {
			return line, nil, nil, next, false, true
		}
	}
	value = trimOWS(line[colon+1:])
	for _, c := range value {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return line, nil, nil, next, false, true
		}
	}
	return line, name, value, next, true, false
}

// parseRequestHead parses rq.head; on a bad request it returns the status and
// page to send.
func parseRequestHead(rq *fastReq) (int, string) {
	head := rq.head
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		i = len(head)
	}
	line := bytes.TrimSuffix(head[:i], []byte{'\r'})
	rq.fields = min(i+1, len(head))
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return http.StatusBadRequest, "400 Bad Request: malformed request line\n"
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return http.StatusBadRequest, "400 Bad Request: malformed request line\n"
	}
	rq.method, rq.uri = line[:sp1], rest[:sp2]
	rq.isHead = string(rq.method) == http.MethodHead
	proto := rest[sp2+1:]
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		rq.http10 = true
	default:
		return http.StatusHTTPVersionNotSupported, "505 HTTP Version Not Supported: this router speaks HTTP/1.0 and HTTP/1.1 here\n"
	}
	for _, c := range rq.method {
		if !validHeaderNameByte(c) {
			return http.StatusBadRequest, "400 Bad Request: malformed method\n"
		}
	}
	for _, c := range rq.uri {
		if c <= ' ' || c == 0x7f {
			return http.StatusBadRequest, "400 Bad Request: malformed request target\n"
		}
	}
	rq.length = -1
	hosts := 0
	for off, fields := rq.fields, 0; ; fields++ {
		_, name, value, next, ok, bad := nextField(head, off)
		if bad {
			return http.StatusBadRequest, "400 Bad Request: malformed header line\n"
		}
		if !ok {
			break
		}
		if fields == maxHeaderFields {
			return http.StatusRequestHeaderFieldsTooLarge, pageTooManyFields
		}
		off = next
		switch classify(name) {
		case hdrHost:
			hosts++
			rq.host = value
		case hdrContentLength:
			n, ok := parseLength(value)
			if !ok || (rq.length >= 0 && n != rq.length) {
				return http.StatusBadRequest, "400 Bad Request: bad Content-Length\n"
			}
			rq.length = n
		case hdrTransferEncoding:
			if !eqFold(value, "chunked") || rq.chunked {
				return http.StatusNotImplemented, "501 Not Implemented: only the chunked transfer coding is supported\n"
			}
			rq.chunked = true
		case hdrConnection:
			for t := range bytes.SplitSeq(value, []byte{','}) {
				t = bytes.TrimSpace(t)
				switch {
				case eqFold(t, "close"):
					rq.closeAfter = true
				case eqFold(t, "keep-alive"):
					rq.keepAlive = true
				case eqFold(t, "upgrade"):
					rq.connUpgrade = true
				case len(t) > 0:
					if !rq.conn.add(t) {
						return http.StatusBadRequest, pageTooManyConnNames
					}
				}
			}
		case hdrUpgrade:
			rq.upgrade = value
		case hdrExpect:
			if eqFold(value, "100-continue") {
				rq.expect = true
			}
		case hdrXFF:
			rq.xff = true
		case hdrRequestID:
			rq.id = value
		}
	}
	if hosts > 1 || (hosts == 0 && !rq.http10) {
		return http.StatusBadRequest, "400 Bad Request: exactly one Host header is required\n"
	}
	if rq.chunked && rq.length >= 0 {
		// Both framings at once is how requests get smuggled.
		return http.StatusBadRequest, "400 Bad Request: both Content-Length and Transfer-Encoding\n"
	}
	if rq.http10 && rq.chunked {
		return http.StatusBadRequest, "400 Bad Request: chunked body in an HTTP/1.0 request\n"
	}
	// Absolute-form targets carry the host themselves.
	if len(rq.uri) > 0 && rq.uri[0] != '/' && string(rq.uri) != "*" {
		if rest, ok := bytes.CutPrefix(rq.uri, []byte("http://")); ok {
			j := bytes.IndexByte(rest, '/')
			if j < 0 {
				rq.host, rq.uri = rest, []byte("/")
			} else {
				rq.host, rq.uri = rest[:j], rest[j:]
			}
		} else {
			return http.StatusBadRequest, "400 Bad Request: unsupported request target\n"
		}
	}
	if !validHost(rq.host) {
		return http.StatusBadRequest, pageBadHost
	}
	return 0, ""
}

// parseLength parses a Content-Length value: digits only (no sign, no
// space), at most 18 of them so it cannot overflow.
func parseLength[T string | []byte](v T) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, true
}

// proxyHeader reports request headers a client may not pass off as the
// router's: other proxies' forwarding headers, and any name with an
// underscore, which some frameworks read as the same header spelt with a
// hyphen (as nginx, dropped by default).
func proxyHeader(name []byte) bool {
	if bytes.IndexByte(name, '_') >= 0 || eqFold(name, "forwarded") || eqFold(name, "x-real-ip") {
		return true
	}
	const prefix = "x-forwarded-"
	return len(name) > len(prefix) && eqFold(name[:len(prefix)], prefix)
}

// validHost reports whether a Host value is a host name, an IPv4 address
// or a bracketed IPv6 address, with an optional port of digits. Anything
// else (userinfo, a second host after '@') would route by one reading of
// it and reach the app, which builds links with it, by another.
func validHost[T string | []byte](h T) bool {
	i, n := 0, len(h)
	if n > 0 && h[0] == '[' {
		for i = 1; i < n && h[i] != ']'; i++ {
			if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == ':' || c == '.') {
				return false
			}
		}
		if i == n || i == 1 {
			return false
		}
		i++
	} else {
		for ; i < n && h[i] != ':'; i++ {
			if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '.' || c == '_') {
				return false
			}
		}
	}
	if i < n {
		if h[i] != ':' {
			return false
		}
		for i++; i < n; i++ {
			if h[i] < '0' || h[i] > '9' {
				return false
			}
		}
	}
	return true
}

// writeUpstreamHead writes the request head to the backend.
func writeUpstreamHead(bw *bufio.Writer, rq *fastReq, ip string, id []byte) {
	bw.Write(rq.method)
	bw.WriteByte(' ')
	bw.Write(rq.uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.Write(rq.host)
	bw.WriteString("\r\n")
	for off := rq.fields; ; {
		line, name, _, next, ok, _ := nextField(rq.head, off)
		if !ok {
			break
		}
		off = next
		if classify(name) != hdrOther || rq.conn.has(name) || proxyHeader(name) {
			continue
		}
		bw.Write(line)
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-For: ")
	if rq.xff {
		for off := rq.fields; ; {
			_, name, value, next, ok, _ := nextField(rq.head, off)
			if !ok {
				break
			}
			off = next
			if classify(name) == hdrXFF {
				bw.Write(value)
				bw.WriteString(", ")
			}
		}
	}
	bw.WriteString(ip)
	bw.WriteString("\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ")
	bw.Write(rq.host)
	bw.WriteString("\r\nX-Request-Id: ")
	bw.Write(id)
	bw.WriteString("\r\n")
	if rq.connUpgrade && len(rq.upgrade) > 0 {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.Write(rq.upgrade)
		bw.WriteString("\r\n")
	}
	switch {
	case rq.chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case rq.length >= 0:
		var nb [20]byte
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(nb[:0], rq.length, 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
}

// scanResponseHead validates a backend's response head and reads its
// framing into rh, without allocating on the common path.
func scanResponseHead(head []byte, rh *respHead) error {
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		i = len(head)
	}
	line := bytes.TrimSuffix(head[:i], []byte{'\r'})
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return fmt.Errorf("parse status line %q: %w", line, ErrBadUpstreamResponse)
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return fmt.Errorf("parse status code %q: %w", line[9:12], ErrBadUpstreamResponse)
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return fmt.Errorf("parse status code %d: %w", code, ErrBadUpstreamResponse)
	}
	rh.status, rh.length = code, -1
	rh.statusLine = line[9:]
	rh.keepAlive = line[7] != '0'
	rh.fields = min(i+1, len(head))
	closeConn := false
	for off := rh.fields; ; {
		_, name, value, next, ok, bad := nextField(head, off)
		if bad {
			return fmt.Errorf("parse header: %w", ErrBadUpstreamResponse)
		}
		if !ok {
			break
		}
		off = next
		switch classify(name) {
		case hdrConnection:
			for t := range bytes.SplitSeq(value, []byte{','}) {
				t = bytes.TrimSpace(t)
				switch {
				case eqFold(t, "close"):
					closeConn = true
				case eqFold(t, "keep-alive"):
					rh.keepAlive = true
				case len(t) > 0 && !eqFold(t, "upgrade"):
					if !rh.conn.add(t) {
						return fmt.Errorf("parse connection header: over %d names: %w", maxConnTokens, ErrBadUpstreamResponse)
					}
				}
			}
		case hdrUpgrade:
			rh.upgrade = string(value)
		case hdrTransferEncoding:
			if eqFold(value, "chunked") {
				rh.chunked = true
			} else if !eqFold(value, "identity") {
				closeConn = true
			}
		case hdrContentLength:
			n, ok := parseLength(value)
			if !ok || (rh.length >= 0 && n != rh.length) {
				return fmt.Errorf("parse content-length %q: %w", value, ErrBadUpstreamResponse)
			}
			rh.length = n
		}
	}
	if rh.chunked {
		rh.length = -1
	}
	if closeConn {
		rh.keepAlive = false
	}
	return nil
}

// writeClientHead writes the response head to the client (without the
// final blank line): hop-by-hop headers dropped, framing for mode.
func writeClientHead(bw *bufio.Writer, head []byte, rh *respHead, mode int, closeConn bool) {
	bw.WriteString("HTTP/1.1 ")
	bw.Write(rh.statusLine)
	bw.WriteString("\r\n")
	sawLength := false
	for off := rh.fields; ; {
		line, name, _, next, ok, _ := nextField(head, off)
		if !ok {
			break
		}
		off = next
		switch classify(name) {
		case hdrOther, hdrRequestID, hdrXFF, hdrXForwarded, hdrHost, hdrExpect:
			if rh.conn.has(name) {
				continue
			}
		case hdrTrailer:
			if mode != bodyChunked || !rh.chunked {
				continue
			}
		case hdrContentLength:
			if mode != bodyLength && mode != bodyNone || sawLength || rh.chunked {
				continue
			}
			sawLength = true
		default:
			continue
		}
		bw.Write(line)
		bw.WriteString("\r\n")
	}
	if mode == bodyChunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if closeConn {
		bw.WriteString("Connection: close\r\n")
	}
}

// lookupBytes finds the route for a lower-cased host without allocating.
func (c *compiled) lookupBytes(host []byte) *route {
	if r := c.hosts[string(host)]; r != nil {
		return r
	}
	if len(c.wild) > 0 {
		if i := bytes.IndexByte(host, '.'); i > 0 {
			return c.wild[string(host[i+1:])]
		}
	}
	return nil
}

// lowerHost appends host, lower-cased, without port or trailing dot, to dst.
func lowerHost(dst, host []byte) []byte {
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && !bytes.HasSuffix(host, []byte("]")) {
		host = host[:i]
	}
	host = bytes.TrimSuffix(host, []byte{'.'})
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// trimOWS trims spaces and tabs around a field value.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
