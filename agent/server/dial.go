package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bothy/bothy/agent/wire"
	"github.com/hashicorp/yamux"
)

// Backoff bounds for the agent's redial loop.
const (
	minRedial = 10 * time.Millisecond
	maxRedial = time.Second
)

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
	sess, err := hello(conn, token)
	if err != nil {
		return false, err
	}
	return true, srv.ServeSession(ctx, sess)
}

// hello says hello on a new connection to bothy with token and, once bothy
// welcomes it, makes the session the agent serves; the connection is
// closed on failure.
func hello(conn net.Conn, token string) (*yamux.Session, error) {
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := wire.WriteJSON(conn, wire.Hello{Version: wire.ProtocolVersion, Token: token, PID: os.Getpid()}); err != nil {
		conn.Close()
		return nil, err
	}
	var w wire.Welcome
	if err := wire.ReadJSON(conn, &w); err != nil {
		conn.Close()
		return nil, err
	}
	if w.Error != "" {
		conn.Close()
		return nil, fmt.Errorf("refused: %s", w.Error)
	}
	_ = conn.SetDeadline(time.Time{})
	sess, err := yamux.Server(wire.ChannelConn(conn), wire.YamuxConfig())
	if err != nil {
		conn.Close()
		return nil, err
	}
	return sess, nil
}

// ReadToken reads the token WriteToken put beside socket.
func ReadToken(socket string) (string, error) {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(socket), wire.TokenName))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
