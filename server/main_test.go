package server

import (
	"testing"

	"github.com/bothy/bothy/internal/testenv"
)

// The suite's network, which its sandboxes join.
var network, bridge = testenv.Network("test")

// TestMain fails the run when a test leaves a container, image or network of
// this suite's in the engine.
func TestMain(m *testing.M) { testenv.Main(m) }
