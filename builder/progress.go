package builder

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
)

// tailBuffer keeps the last max bytes written to it, so a failed step can
// report the end of its output.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

// Write keeps p's tail.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// lines returns up to n last lines.
func (t *tailBuffer) lines(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimRight(string(bytes.ToValidUTF8(t.buf, []byte("?"))), "\n")
	ls := strings.Split(s, "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// StepError is a build step that ran and failed.
type StepError struct {
	// Step is the step's number in the build (1-based), Line its line in
	// the Dockerfile (0 for generated buildpack steps).
	Step, Line int
	// Instruction is the step's source text.
	Instruction string
	// ExitCode is the process's exit code (or 128+signal).
	ExitCode int
	// OOMKilled is true when it ran out of memory.
	OOMKilled bool
	// Tail is the end of the step's output.
	Tail string
}

// Error describes the failure with the end of the output.
func (e *StepError) Error() string {
	oom := ""
	if e.OOMKilled {
		oom = " (out of memory)"
	}
	where := fmt.Sprintf("step %d", e.Step)
	if e.Line > 0 {
		where += fmt.Sprintf(" (line %d)", e.Line)
	}
	return fmt.Sprintf("%s %s: exited with code %d%s; last output:\n%s", where, e.Instruction, e.ExitCode, oom, e.Tail)
}

// Unwrap makes errors.Is(err, ErrStepFailed) true.
func (e *StepError) Unwrap() error { return ErrStepFailed }
