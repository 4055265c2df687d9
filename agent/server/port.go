package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/bothy/bothy/agent/wire"
)

// portDialTimeout bounds the agent's dial of a port inside the sandbox.
const portDialTimeout = 5 * time.Second

// portCopyBuffer is the buffer of a port connection's bytes from the
// server to bothy.
const portCopyBuffer = 256 << 10

// servePortDial connects st to a TCP port of the sandbox's loopback: after
// the answer frame, the stream carries the connection's bytes both ways, and
// each side's close is passed on as a half-close.
func (s *Server) servePortDial(ctx context.Context, st net.Conn, out *wire.FrameSender, port int) {
	if port < 1 || port > 65535 {
		_ = out.SendJSON(wire.OpResult{Error: fmt.Sprintf("port %d is not a TCP port", port)})
		return
	}
	d := net.Dialer{Timeout: portDialTimeout}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		// A server may listen on the IPv6 loopback only.
		if c6, err6 := d.DialContext(ctx, "tcp", net.JoinHostPort("::1", strconv.Itoa(port))); err6 == nil {
			c, err = c6, nil
		}
	}
	if err != nil {
		_ = out.SendJSON(wire.OpResult{Code: wire.CodeRefused, Error: fmt.Sprintf("nothing listens on port %d", port)})
		return
	}
	defer c.Close()
	if err := out.SendJSON(wire.OpResult{}); err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { c.Close(); st.Close() })
	defer stop()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		_, _ = io.Copy(c, st)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	// The answer's way runs in this goroutine. Large reads make large
	// frames: fewer of them for a big answer.
	_, _ = io.CopyBuffer(st, c, make([]byte, portCopyBuffer))
	_ = st.Close() // yamux: a FIN; the other way still reads
	<-sent
}
