package router

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// quiet reports whether a pooled backend connection has nothing to read: a
// backend that sent bytes after its response (more body than it framed, or
// a body on HEAD) or closed meanwhile would hand them to the next request
// as its response. As nginx and Go's Transport, such a connection is
// dropped rather than reused. One non-blocking peek; unknown is quiet.
func quiet(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	q := true
	var b [1]byte
	rc.Read(func(fd uintptr) bool { //nolint:errcheck // the callback's result is the answer
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		q = err == unix.EAGAIN
		return true
	})
	return q
}
