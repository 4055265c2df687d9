package kubernetes_test

import (
	"testing"

	"github.com/bothy/bothy/internal/testenv"
)

// TestMain fails the run when a test leaves a container, image or network of
// this suite's in the engine.
func TestMain(m *testing.M) { testenv.Main(m) }
