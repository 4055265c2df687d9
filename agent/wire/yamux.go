package wire

import (
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// YamuxConfig is the configuration of both ends' yamux sessions.
func YamuxConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = true
	cfg.KeepAliveInterval = 10 * time.Second
	cfg.StreamCloseTimeout = 30 * time.Second
	// A larger window lets one stream (a file upload or download) run at
	// memory speed instead of waiting on window updates.
	cfg.MaxStreamWindowSize = 4 << 20
	return cfg
}
