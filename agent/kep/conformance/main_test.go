package conformance

import (
	"testing"

	"github.com/bothy/bothy/internal/testenv"
)

// TestMain removes what the suite's tests leave: the agent binary built for
// them, and anything of this suite's in the engine.
func TestMain(m *testing.M) { testenv.Main(m) }
