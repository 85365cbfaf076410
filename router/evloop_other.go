//go:build !linux

package router

import "net"

// evLoops stands for the event loops, which need Linux's epoll: every
// connection gets its goroutine.
type evLoops struct{}

const (
	loopDrain = iota + 1
	loopClose
)

func newEvLoops(*fastServer) (*evLoops, error) { return nil, nil }
func (*evLoops) adopt(net.Conn) bool           { return false }
func (*evLoops) setState(int32)                {}
func (*evLoops) live() int64                   { return 0 }
func (*evLoops) stop()                         {}
