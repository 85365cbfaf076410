package router

import "fmt"

// chunkScan finds where a chunked message body ends without decoding it, so
// the event loop (evloop_linux.go) can pass a backend's chunked response to
// an HTTP/1.1 client as it is, over partial reads. Lines must end with
// CRLF: a bare LF is where parsers disagree, and so where requests and
// responses get smuggled.
type chunkScan struct {
	state    int
	size     int64 // bytes of chunk data still to come, or the size being read
	digits   int
	lineLen  int // bytes of the current extension or trailer line
	trailers int
}

// Scanner states.
const (
	csSize      = iota // chunk size digits
	csExt              // chunk extension, up to the line end
	csSizeLF           // after '\r' of the size line
	csData             // chunk data
	csDataCR           // the CRLF after chunk data
	csDataLF           // after '\r' following chunk data
	csLineStart        // start of a trailer line or of the final blank line
	csTrailer          // inside a trailer line
	csTrailerLF        // after '\r' of a trailer line
	csFinalLF          // after '\r' of the final blank line
	csDone
)

const (
	maxChunkLine = 4 << 10
	maxTrailers  = 100
)

// feed scans p, the next bytes of the body. It returns how many of them
// belong to the body (all of p until the end is found) and whether the body
// ended there; a malformed body is an error.
func (s *chunkScan) feed(p []byte) (int, bool, error) {
	i := 0
	for i < len(p) {
		c := p[i]
		switch s.state {
		case csSize:
			var v byte
			switch {
			case '0' <= c && c <= '9':
				v = c - '0'
			case 'a' <= c && c <= 'f':
				v = c - 'a' + 10
			case 'A' <= c && c <= 'F':
				v = c - 'A' + 10
			case s.digits > 0 && c == ';':
				s.state, s.lineLen = csExt, 0
				i++
				continue
			case s.digits > 0 && c == '\r':
				s.state = csSizeLF
				i++
				continue
			default:
				return i, false, fmt.Errorf("scan chunk size: byte %q: %w", c, ErrBadUpstreamResponse)
			}
			if s.digits == 15 {
				return i, false, fmt.Errorf("scan chunk size: too large: %w", ErrBadUpstreamResponse)
			}
			s.size = s.size<<4 | int64(v)
			s.digits++
			i++
		case csExt:
			switch {
			case c == '\r':
				s.state = csSizeLF
			case s.lineLen >= maxChunkLine || c < 0x20 && c != '\t' || c == 0x7f:
				return i, false, fmt.Errorf("scan chunk extension: %w", ErrBadUpstreamResponse)
			default:
				s.lineLen++
			}
			i++
		case csSizeLF:
			if c != '\n' {
				return i, false, fmt.Errorf("scan chunk size line end: %w", ErrBadUpstreamResponse)
			}
			i++
			s.endSizeLine()
		case csData:
			n := int64(len(p) - i)
			if n > s.size {
				n = s.size
			}
			i += int(n)
			s.size -= n
			if s.size == 0 {
				s.state = csDataCR
			}
		case csDataCR, csDataLF:
			switch {
			case c == '\r' && s.state == csDataCR:
				s.state = csDataLF
			case c == '\n' && s.state == csDataLF:
				s.state, s.size, s.digits = csSize, 0, 0
			default:
				return i, false, fmt.Errorf("scan chunk data end: %w", ErrBadUpstreamResponse)
			}
			i++
		case csLineStart:
			switch c {
			case '\r':
				s.state = csFinalLF
			case '\n':
				return i, false, fmt.Errorf("scan trailers: bare LF: %w", ErrBadUpstreamResponse)
			default:
				if s.trailers++; s.trailers > maxTrailers {
					return i, false, fmt.Errorf("scan trailers: too many: %w", ErrBadUpstreamResponse)
				}
				s.state, s.lineLen = csTrailer, 1
			}
			i++
		case csTrailer:
			switch {
			case c == '\r':
				s.state = csTrailerLF
			case s.lineLen >= maxChunkLine || c < 0x20 && c != '\t' || c == 0x7f:
				return i, false, fmt.Errorf("scan trailer: %w", ErrBadUpstreamResponse)
			default:
				s.lineLen++
			}
			i++
		case csTrailerLF, csFinalLF:
			if c != '\n' {
				return i, false, fmt.Errorf("scan trailer line end: %w", ErrBadUpstreamResponse)
			}
			i++
			if s.state == csFinalLF {
				s.state = csDone
				return i, true, nil
			}
			s.state = csLineStart
		case csDone:
			return i, true, nil
		}
	}
	return i, s.state == csDone, nil
}

func (s *chunkScan) endSizeLine() {
	if s.size == 0 {
		s.state = csLineStart
		return
	}
	s.state = csData
}
