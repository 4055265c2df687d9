package wire

import (
	_ "embed"
)

// Runtimes a runner may serve.
const (
	RuntimePython = "python"
	RuntimeNode   = "node"
	RuntimeBash   = "bash"
)
