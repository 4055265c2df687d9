package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// portDialTimeout bounds the agent's dial of a port inside the sandbox.
const portDialTimeout = 5 * time.Second

// portCopyBuffer is the buffer of a port connection's bytes from the
// server to bothy.
const portCopyBuffer = 256 << 10

// ErrNotListening says nothing listens on the port dialled.
var ErrNotListening = errors.New("nothing listens on the port")

// servePortDial connects st to a TCP port of the sandbox's loopback: after
// the answer frame, the stream carries the connection's bytes both ways, and
// each side's close is passed on as a half-close.
func (s *Server) servePortDial(ctx context.Context, st net.Conn, out *frameSender, port int) {
	if port < 1 || port > 65535 {
		_ = out.sendJSON(OpResult{Error: fmt.Sprintf("port %d is not a TCP port", port)})
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
		_ = out.sendJSON(OpResult{Code: CodeRefused, Error: fmt.Sprintf("nothing listens on port %d", port)})
		return
	}
	defer c.Close()
	if err := out.sendJSON(OpResult{}); err != nil {
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

// OpenPort is DialPort without the wait for the agent's answer: the
// connection is returned at once, and what is written to it is sent on
// while the agent dials (it holds the bytes until its dial is done), which
// saves a round trip to the agent on every new connection. The answer is
// read by the first Read, which fails with ErrNotListening when nothing
// listens there; the connection is not bound to ctx after it is opened.
func (c *Conn) OpenPort(ctx context.Context, port int) (net.Conn, error) {
	st, stop, err := c.open(ctx, Request{Op: "port_dial", Port: port})
	if err != nil {
		return nil, err
	}
	stop()
	return &portConn{Conn: st}, nil
}

// portConn is a stream of a port_dial whose answer has not been read yet.
type portConn struct {
	net.Conn
	answer sync.Once
	err    error
}

// Read reads the agent's answer first, then the connection's bytes.
func (p *portConn) Read(b []byte) (int, error) {
	p.answer.Do(func() {
		var res OpResult
		switch err := readJSON(p.Conn, &res); {
		case err != nil:
			p.err = err
		case res.Code == CodeRefused:
			p.err = ErrNotListening
		case res.Error != "":
			p.err = errors.New(res.Error)
		}
	})
	if p.err != nil {
		return 0, p.err
	}
	return p.Conn.Read(b)
}

// DialPort connects to TCP port of the sandbox's loopback through the agent.
// The connection is a stream of the channel: nothing is published on the
// host. ErrNotListening when nothing listens there.
func (c *Conn) DialPort(ctx context.Context, port int) (net.Conn, error) {
	st, stop, err := c.open(ctx, Request{Op: "port_dial", Port: port})
	if err != nil {
		return nil, err
	}
	var res OpResult
	err = readJSON(st, &res)
	// The connection outlives ctx: only its dial is bounded by it.
	if !stop() {
		st.Close()
		return nil, ctx.Err()
	}
	switch {
	case err != nil:
		st.Close()
		return nil, err
	case res.Code == CodeRefused:
		st.Close()
		return nil, ErrNotListening
	case res.Error != "":
		st.Close()
		return nil, errors.New(res.Error)
	}
	return st, nil
}
