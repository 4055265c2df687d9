package agent

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bothy/bothy/agent/wire"
	"github.com/hashicorp/yamux"
)

// WriteToken puts token in dir for an agent that runs as the host uid uid.
func WriteToken(dir, token string, uid int) error {
	if err := writeFile(filepath.Join(dir, wire.TokenName), []byte(token), 0o400, uid); err != nil {
		return fmt.Errorf("write agent token: %w", err)
	}
	return nil
}

// handshakeTimeout bounds how long a dialler may take to say hello.
const handshakeTimeout = 2 * time.Second

// ErrClosed is returned by Endpoint.Conn after Close.
var ErrClosed = errors.New("agent: endpoint closed")

// Endpoint is bothy's end of one sandbox's channel, and the live connection
// once there is one: a unix socket that the sandbox's agent dials (Listen),
// or the agent's TCP port that bothy dials with mutual TLS (DialTLS).
type Endpoint struct {
	path, token string
	log         *slog.Logger
	ln          net.Listener
	// dial, for the network transport, makes a connection to the agent;
	// dialing is held by the one caller of Conn that dials.
	dial    func(context.Context) (net.Conn, error)
	dialing chan struct{}

	mu    sync.Mutex
	conn  *Conn
	ready chan struct{} // closed while conn is live

	closed chan struct{}
	wg     sync.WaitGroup
}

// Listen listens on the unix socket path (replacing a stale one) for the agent
// that knows token.
func Listen(path, token string, log *slog.Logger) (*Endpoint, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on agent socket: %w", err)
	}
	// The agent may run as a remapped root; the token, not the mode, keeps
	// strangers out.
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod agent socket: %w", err)
	}
	e := &Endpoint{
		path: path, token: token, log: log, ln: ln,
		ready:  make(chan struct{}),
		closed: make(chan struct{}),
	}
	e.wg.Add(1)
	go e.accept()
	return e, nil
}

func (e *Endpoint) accept() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if err != nil {
			select {
			case <-e.closed:
				return
			default:
			}
			e.log.Warn("accept on agent socket", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		conn, err := e.handshake(c)
		if err != nil {
			e.log.Warn("agent handshake refused", "err", err)
			c.Close()
			continue
		}
		_ = e.set(conn) // false once closed: the accept loop ends next
	}
}

func (e *Endpoint) handshake(c net.Conn) (*Conn, error) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	var h wire.Hello
	if err := wire.ReadJSON(c, &h); err != nil {
		return nil, err
	}
	refuse := func(msg string) (*Conn, error) {
		_ = wire.WriteJSON(c, wire.Welcome{Error: msg})
		return nil, errors.New(msg)
	}
	if subtle.ConstantTimeCompare([]byte(h.Token), []byte(e.token)) != 1 {
		return refuse("bad token")
	}
	if h.Version != wire.ProtocolVersion {
		return refuse(fmt.Sprintf("protocol version %d, want %d", h.Version, wire.ProtocolVersion))
	}
	if err := wire.WriteJSON(c, wire.Welcome{}); err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	sess, err := yamux.Client(wire.ChannelConn(c), wire.YamuxConfig())
	if err != nil {
		return nil, err
	}
	return &Conn{sess: sess, AgentPID: h.PID}, nil
}

// handshakes counts the agent connections accepted by every endpoint of
// the process, first ones and reconnections.
var handshakes atomic.Int64

// Handshakes is how many agent connections the process has accepted.
func Handshakes() int64 { return handshakes.Load() }

// set makes conn the live connection, closing the one it replaces, and
// watches it; false, with conn closed, once the endpoint is closed.
func (e *Endpoint) set(conn *Conn) bool {
	e.mu.Lock()
	select {
	case <-e.closed:
		e.mu.Unlock()
		conn.Close()
		return false
	default:
	}
	handshakes.Add(1)
	old := e.conn
	e.conn = conn
	select {
	case <-e.ready:
	default:
		close(e.ready)
	}
	// Added under mu, before Close (which takes mu to see closed) can wait.
	e.wg.Add(1)
	e.mu.Unlock()
	if old != nil {
		old.Close()
	}
	go func() {
		defer e.wg.Done()
		select {
		case <-conn.sess.CloseChan():
		case <-e.closed:
			conn.Close()
		}
		e.mu.Lock()
		if e.conn == conn {
			e.conn = nil
			e.ready = make(chan struct{})
		}
		e.mu.Unlock()
	}()
	return true
}

// Conn returns the live connection, waiting for the agent to dial in when there
// is none yet (or, on the network transport, dialling it).
func (e *Endpoint) Conn(ctx context.Context) (*Conn, error) {
	for {
		e.mu.Lock()
		conn, ready := e.conn, e.ready
		e.mu.Unlock()
		if conn != nil && !conn.sess.IsClosed() {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for agent: %w", ctx.Err())
		case <-e.closed:
			return nil, ErrClosed
		case <-ready:
		case e.dialing <- struct{}{}: // nil, and never ready, when listening
			conn, err := e.redial(ctx)
			<-e.dialing
			if err != nil {
				return nil, err
			}
			return conn, nil
		}
	}
}

// Connected reports whether an agent is connected now.
func (e *Endpoint) Connected() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conn != nil && !e.conn.sess.IsClosed()
}

// Drop closes the live connection, if any; the agent will redial.
func (e *Endpoint) Drop() {
	e.mu.Lock()
	conn := e.conn
	e.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// Close stops listening, closes the connection, joins its goroutines and removes
// the socket.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	select {
	case <-e.closed:
		e.mu.Unlock()
		return nil
	default:
	}
	close(e.closed)
	e.mu.Unlock()
	if e.ln == nil {
		e.Drop()
		e.wg.Wait()
		return nil
	}
	err := e.ln.Close()
	e.wg.Wait()
	_ = os.Remove(e.path)
	return err
}
