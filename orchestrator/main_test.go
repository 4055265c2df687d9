package orchestrator

import (
	"testing"

	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime/docker"
)

// The engine and image builder bothy wires in.
var (
	_ Runtime = (*docker.Docker)(nil)
	_ Images  = (*images.Builder)(nil)
)

// The suite's network, which its sandboxes join.
var network, bridge = testenv.Network("test")

// TestMain fails the run when a test leaves a container, image or network of
// this suite's in the engine.
func TestMain(m *testing.M) { testenv.Main(m) }
