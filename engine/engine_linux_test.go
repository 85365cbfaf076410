package engine

import (
	"strings"
	"testing"
)

func TestRunTrue(t *testing.T) {
	e := newTestEngine(t)
	out, st := output(t, e, testSpec("sh", "-c", "echo hello; echo oops >&2; exit 3"))
	if st.Code != 3 || st.Signal != 0 || st.OOMKilled {
		t.Fatalf("status = %+v, want code 3", st)
	}
	if !strings.Contains(out, "hello\n") || !strings.Contains(out, "oops\n") {
		t.Fatalf("log = %q", out)
	}
}
