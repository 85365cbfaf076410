package router

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// unsent returns how many bytes written to socket fd the peer has not yet
// acknowledged, or -1 when that is unknown. A write timeout watches it:
// the queue shrinks as a slow client reads, long before the socket has
// room enough to report it writable again.
func unsent(fd int) int {
	n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return -1
	}
	return n
}

// connUnsent is unsent for a connection of the goroutine path.
func connUnsent(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	rc.Control(func(fd uintptr) { //nolint:errcheck // n stays -1 on failure
		n = unsent(int(fd))
	})
	return n
}
