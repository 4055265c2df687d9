package agent

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/bothy/bothy/agent/wire"
)

// BulkBuffer lends a bulk copy buffer for the bytes c brings, once c (a
// stream of the channel, as OpenPort returns) has become a bulk one: its
// reader kept up until its window grew, and the buffer came out of its
// key's budget then. ok is false before, and for any other connection.
func BulkBuffer(c net.Conn) (buf []byte, put func(), ok bool) {
	if p, isPort := c.(*portConn); isPort {
		c = p.Conn
	}
	return wire.BulkBuffer(c)
}

// ErrNotListening says nothing listens on the port dialled.
var ErrNotListening = errors.New("nothing listens on the port")

// OpenPort is DialPort without the wait for the agent's answer: the
// connection is returned at once, and what is written to it is sent on
// while the agent dials (it holds the bytes until its dial is done), which
// saves a round trip to the agent on every new connection. The answer is
// read by the first Read, which fails with ErrNotListening when nothing
// listens there; the connection is not bound to ctx after it is opened.
func (c *Conn) OpenPort(ctx context.Context, port int) (net.Conn, error) {
	st, stop, err := c.open(ctx, wire.Request{Op: "port_dial", Port: port})
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
		var res wire.OpResult
		switch err := wire.ReadJSON(p.Conn, &res); {
		case err != nil:
			p.err = err
		case res.Code == wire.CodeRefused:
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
	st, stop, err := c.open(ctx, wire.Request{Op: "port_dial", Port: port})
	if err != nil {
		return nil, err
	}
	var res wire.OpResult
	err = wire.ReadJSON(st, &res)
	// The connection outlives ctx: only its dial is bounded by it.
	if !stop() {
		st.Close()
		return nil, ctx.Err()
	}
	switch {
	case err != nil:
		st.Close()
		return nil, err
	case res.Code == wire.CodeRefused:
		st.Close()
		return nil, ErrNotListening
	case res.Error != "":
		st.Close()
		return nil, errors.New(res.Error)
	}
	return st, nil
}
