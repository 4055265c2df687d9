package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/bothy/bothy/agent/wire"
)

// Redial bounds of the network transport: bothy dials an agent that is not
// up yet again every minRedial for flatRedial (an agent that was just
// started listens within tens of milliseconds, and a refused connect costs
// little), then doubling to maxRedial, for as long as a caller waits for it.
const (
	minRedial  = 5 * time.Millisecond
	flatRedial = time.Second
	maxRedial  = 250 * time.Millisecond
	// dialTimeout bounds one TCP connect.
	dialTimeout = 2 * time.Second
)

// DialTLS is the endpoint of sandbox id's agent on the network transport:
// addr says where the agent listens now (its container's address changes
// across starts), and bothy dials it when a caller asks for the connection,
// presenting the certificate of cr and accepting only the agent certificate
// ca made for id. The agent then says hello with token, as on the socket.
func DialTLS(id string, addr func(context.Context) (string, error), ca *CA, cr *Credentials, token string, log *slog.Logger) *Endpoint {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cr.bothy},
		// The peer is named by a URI, not a host name: VerifyConnection
		// checks its chain and its name instead of the standard check.
		InsecureSkipVerify: true,
		VerifyConnection:   wire.VerifyPeer(ca.pool, wire.AgentIdentity(id), x509.ExtKeyUsageServerAuth),
	}
	dial := func(ctx context.Context) (net.Conn, error) {
		a, err := addr(ctx)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, dialTimeout+handshakeTimeout)
		defer cancel()
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: dialTimeout}, Config: cfg}
		return d.DialContext(ctx, "tcp", a)
	}
	return &Endpoint{
		token: token, log: log, dial: dial,
		dialing: make(chan struct{}, 1),
		ready:   make(chan struct{}),
		closed:  make(chan struct{}),
	}
}

// redial dials the agent until it answers, ctx ends or the endpoint closes.
func (e *Endpoint) redial(ctx context.Context) (*Conn, error) {
	wait, start := minRedial, time.Now()
	for {
		if conn, ok := e.live(); ok { // another caller's dial made it
			return conn, nil
		}
		c, err := e.dial(ctx)
		if err == nil {
			var conn *Conn
			if conn, err = e.handshake(c); err == nil {
				if !e.set(conn) {
					return nil, ErrClosed
				}
				return conn, nil
			}
			c.Close()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("dial agent: %w (last: %v)", ctx.Err(), err)
		case <-e.closed:
			t.Stop()
			return nil, ErrClosed
		case <-t.C:
		}
		if time.Since(start) >= flatRedial {
			wait = min(2*wait, maxRedial)
		}
	}
}

// live is the live connection, if there is one.
func (e *Endpoint) live() (*Conn, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil && !e.conn.sess.IsClosed() {
		return e.conn, true
	}
	return nil, false
}
