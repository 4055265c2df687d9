package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/hashicorp/yamux"
)

// Backoff bounds for the agent's redial loop.
const (
	minRedial = 10 * time.Millisecond
	maxRedial = time.Second
)

func yamuxConfig() *yamux.Config {
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

// Dial connects to bothy's socket, says hello with token, and serves the session
// with srv; when the connection ends it redials with backoff. It returns when ctx
// is done.
func Dial(ctx context.Context, socket, token string, srv *Server, log *slog.Logger) {
	wait := minRedial
	for ctx.Err() == nil {
		served, err := dialOnce(ctx, socket, token, srv)
		if served {
			wait = minRedial
		}
		if err != nil && ctx.Err() == nil {
			log.Debug("channel down", "err", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		if !served {
			wait = min(wait*2, maxRedial)
		}
	}
}

func dialOnce(ctx context.Context, socket, token string, srv *Server) (served bool, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return false, err
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := writeJSON(conn, Hello{Version: ProtocolVersion, Token: token, PID: os.Getpid()}); err != nil {
		conn.Close()
		return false, err
	}
	var w Welcome
	if err := readJSON(conn, &w); err != nil {
		conn.Close()
		return false, err
	}
	if w.Error != "" {
		conn.Close()
		return false, fmt.Errorf("refused: %s", w.Error)
	}
	_ = conn.SetDeadline(time.Time{})
	sess, err := yamux.Server(channelConn(conn), yamuxConfig())
	if err != nil {
		conn.Close()
		return false, err
	}
	return true, srv.ServeSession(ctx, sess)
}
