package snapshot

import (
	"testing"

	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime/docker"
)

// The engine bothy wires in.
var _ interface {
	Engine
	Archiver
} = (*docker.Docker)(nil)

// TestMain fails the run when a test leaves a container, image or network of
// this suite's in the engine.
func TestMain(m *testing.M) { testenv.Main(m) }
