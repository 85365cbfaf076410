//go:build !linux

package router

import "net"

// connUnsent would return the bytes of c's send queue the peer has not
// acknowledged; elsewhere than Linux it is unknown (-1), and a write
// timeout counts only writes that complete as progress.
func connUnsent(net.Conn) int { return -1 }
