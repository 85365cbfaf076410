// Package tty carries the terminal a one-off command runs on, its size at
// the start and its window changes, from the front doors that learn them
// (an SSH pty-req and window-change requests, the local CLI's terminal) to
// deploy, which hands them to the engine. Sizes come from clients, so
// which of them to apply is decided here, for every door alike.
package tty

// MaxCells bounds each dimension of a size: no real terminal is wider or
// taller, so a larger value is a broken or hostile client's and is ignored.
const MaxCells = 10000

// Size is a terminal's size in character cells.
type Size struct {
	Width  uint16
	Height uint16
}

// SizeOf is the size width×height, or the zero Size (unknown) when either
// is zero, negative or above MaxCells.
func SizeOf(width, height int) Size {
	if width < 1 || width > MaxCells || height < 1 || height > MaxCells {
		return Size{}
	}
	return Size{Width: uint16(width), Height: uint16(height)}
}

// Valid reports whether s is a size to apply: both dimensions in
// 1..MaxCells. The zero Size is not, and means "leave the default".
func (s Size) Valid() bool {
	return s.Width >= 1 && s.Width <= MaxCells && s.Height >= 1 && s.Height <= MaxCells
}

// Terminal is the terminal a command runs on.
type Terminal struct {
	// Size is the size when the command starts; an invalid one (the zero
	// Size) leaves the default.
	Size Size
	// Resize delivers window changes while the command runs; invalid sizes
	// on it are skipped, and nil means the size stays fixed.
	Resize <-chan Size
}

// NewResize makes a channel of window changes for Send.
func NewResize() chan Size { return make(chan Size, 1) }

// Send puts s on c, a channel from NewResize with one sender, without
// blocking: a size the reader has not taken yet is replaced, since only the
// latest counts. So a slow or absent reader never holds up the sender,
// which carries other traffic too (an SSH session's requests, the control
// socket's stdin).
func Send(c chan Size, s Size) {
	select {
	case c <- s:
		return
	default:
	}
	select {
	case <-c:
	default:
	}
	// The only sender: the buffer has room now.
	c <- s
}
