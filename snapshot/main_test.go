package snapshot

import (
	"testing"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/runtime/docker"
)

// The engine sandboxd wires in.
var _ interface {
	Engine
	Archiver
} = (*docker.Docker)(nil)

// TestMain fails the run when a test leaves a container, image or network of
// this suite's in the engine.
func TestMain(m *testing.M) { testenv.Main(m) }
