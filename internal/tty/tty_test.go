package tty

import "testing"

func TestSizeOf(t *testing.T) {
	tests := []struct {
		name          string
		width, height int
		want          Size
	}{
		{name: "ordinary", width: 100, height: 40, want: Size{Width: 100, Height: 40}},
		{name: "smallest", width: 1, height: 1, want: Size{Width: 1, Height: 1}},
		{name: "largest", width: MaxCells, height: MaxCells, want: Size{Width: MaxCells, Height: MaxCells}},
		{name: "zero width is unknown", width: 0, height: 40},
		{name: "zero height is unknown", width: 100, height: 0},
		{name: "negative", width: -1, height: 40},
		{name: "absurd width", width: MaxCells + 1, height: 40},
		{name: "absurd height past uint16", width: 80, height: 1<<16 + 24},
		{name: "uint32 max from a client", width: 1<<32 - 1, height: 1<<32 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SizeOf(tt.width, tt.height)
			if got != tt.want {
				t.Fatalf("SizeOf(%d, %d) = %+v, want %+v", tt.width, tt.height, got, tt.want)
			}
			if got.Valid() != (tt.want != Size{}) {
				t.Fatalf("%+v.Valid() = %v", got, got.Valid())
			}
		})
	}
	if (Size{Width: MaxCells + 1, Height: 10}).Valid() {
		t.Error("a size built past SizeOf with an absurd width is valid")
	}
}

func TestSendKeepsTheLatest(t *testing.T) {
	c := NewResize()
	done := make(chan struct{})
	go func() {
		// Never blocks although nobody reads.
		for w := 1; w <= 100; w++ {
			Send(c, Size{Width: uint16(w), Height: 1})
		}
		close(done)
	}()
	<-done
	if got := <-c; got.Width != 100 {
		t.Fatalf("reader got %+v, want the last size sent (width 100)", got)
	}
	select {
	case s := <-c:
		t.Fatalf("a second size %+v was waiting", s)
	default:
	}
}
