package orchestrator

import (
	"testing"

	"github.com/sandboxd/sandboxd/images"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/runtime/docker"
)

// The engine and image builder sandboxd wires in.
var (
	_ Runtime = (*docker.Docker)(nil)
	_ Images  = (*images.Builder)(nil)
)

// The suite's network, which its sandboxes join.
var network, bridge = testenv.Network("test")

// TestMain fails the run when a test leaves a container, image or network of
// this suite's in the engine.
func TestMain(m *testing.M) { testenv.Main(m) }
