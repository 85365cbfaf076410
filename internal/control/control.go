// Package control is the local admin door of berth: a root-only unix socket
// through which `berth COMMAND` on the host runs the same command set as the
// SSH interface inside the running daemon, so there is one writer and one
// code path.
//
// The protocol is a stream of frames in both directions. A frame is one type
// byte, a big-endian uint32 length and that many payload bytes. The client
// sends one request frame (JSON), then stdin data frames and a stdin-EOF
// frame, and, when its stdin is a terminal, a window frame at each change of
// the terminal's size (two big-endian uint16, width and height); the server
// sends stdout and stderr frames and ends with one exit frame holding the
// exit status.
package control

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/berthhq/berth/internal/tty"
)

// Frame types.
const (
	frameRequest  byte = 'R'
	frameStdin    byte = 'i'
	frameStdinEOF byte = 'e'
	frameWindow   byte = 'w'
	frameStdout   byte = 'o'
	frameStderr   byte = 'E'
	frameExit     byte = 'x'
)

// maxFrame bounds one frame's payload so a broken or hostile peer cannot make
// the other side allocate without limit.
const maxFrame = 1 << 20

// Request is what a client asks the daemon to run.
type Request struct {
	// Args is the command line, e.g. ["apps:create", "myapp"].
	Args []string `json:"args"`
	// TTY says the client's stdin is a terminal.
	TTY bool `json:"tty,omitempty"`
	// Width and Height are that terminal's size when the command starts;
	// zero when unknown.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
}

func writeFrame(w io.Writer, typ byte, p []byte) error {
	if len(p) > maxFrame {
		return fmt.Errorf("write frame: payload of %d bytes exceeds %d", len(p), maxFrame)
	}
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	_, err := w.Write(p)
	return err
}

func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("read frame: payload of %d bytes exceeds %d: %w", n, maxFrame, ErrProtocol)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, fmt.Errorf("read frame payload: %w", err)
	}
	return hdr[0], buf, nil
}

// ErrProtocol reports a malformed frame stream.
var ErrProtocol = errors.New("control protocol error")

// frameWriter turns Write calls into frames of one type; a mutex shared by
// the stdout and stderr writers keeps frames whole on the connection.
type frameWriter struct {
	mu  *sync.Mutex
	w   io.Writer
	typ byte
}

func (f frameWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	written := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > maxFrame {
			chunk = chunk[:maxFrame]
		}
		if err := writeFrame(f.w, f.typ, chunk); err != nil {
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

func encodeRequest(r Request) ([]byte, error) { return json.Marshal(r) }

func decodeRequest(p []byte) (Request, error) {
	var r Request
	if err := json.Unmarshal(p, &r); err != nil {
		return r, fmt.Errorf("decode request: %w", ErrProtocol)
	}
	return r, nil
}

func encodeWindow(s tty.Size) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, s.Width), s.Height)
}

func decodeWindow(p []byte) (tty.Size, error) {
	if len(p) != 4 {
		return tty.Size{}, fmt.Errorf("decode window size of %d bytes: %w", len(p), ErrProtocol)
	}
	return tty.SizeOf(int(binary.BigEndian.Uint16(p)), int(binary.BigEndian.Uint16(p[2:]))), nil
}
