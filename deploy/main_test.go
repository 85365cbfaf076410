package deploy

import (
	"testing"

	"github.com/berthhq/berth/engine"
	"github.com/berthhq/berth/internal/pgtest"
)

func TestMain(m *testing.M) {
	// The engine re-executes the test binary as container init.
	engine.MaybeInit()
	pgtest.Main(m)
}
