package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bothy/bothy/agent/wire"
	"github.com/hashicorp/yamux"
)

// Bounds of the network transport's listener: anyone who reaches the port
// can start a handshake, so few run at once from each address and none for
// long.
const (
	maxHandshakes    = 4
	handshakeTimeout = 5 * time.Second
)

// Networked says whether bothy put the agent on the network transport: a
// port to listen on beside the token in the directory of socket.
func Networked(socket string) bool {
	_, err := os.Stat(filepath.Join(filepath.Dir(socket), wire.ListenName))
	return err == nil
}

// ListenTLS serves bothy on the network transport until ctx is done: it
// listens on the TCP port written beside socket (on host's address; every
// address when host is empty), and serves each connection
// that proves, with mutual TLS, to be bothy's for this sandbox (its
// certificate signed by the CA beside socket, naming this sandbox and
// bothy's side), after saying hello with token as on the socket. The
// certificate and key are read again for every connection, so a bothy that
// issued new ones is served without a restart.
func ListenTLS(ctx context.Context, host, socket, token string, srv *Server, log *slog.Logger) error {
	dir := filepath.Dir(socket)
	b, err := os.ReadFile(filepath.Join(dir, wire.ListenName))
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || port <= 0 || port > 65535 {
		return fmt.Errorf("bad port in %s: %q", wire.ListenName, b)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return serverTLS(dir)
		},
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := newSlots(maxHandshakes)
	wait := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Out of descriptors, say: wait and go on, as PID 1 must.
			log.Warn("accept for bothy", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			wait = min(2*wait, time.Second)
			continue
		}
		wait = 5 * time.Millisecond
		// Each source address has handshakes of its own, so that code in
		// the sandbox (which dials from the sandbox's own addresses) cannot
		// take bothy's (which dials from the host).
		src := sourceOf(c.RemoteAddr())
		if !slots.take(src) {
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess, err := accept(ctx, tls.Server(c, cfg), token)
			slots.give(src)
			if err != nil {
				log.Debug("connection refused", "from", c.RemoteAddr().String(), "err", err)
				return
			}
			if err := srv.ServeSession(ctx, sess); err != nil && ctx.Err() == nil {
				log.Debug("channel down", "err", err)
			}
		}()
	}
}

// sourceOf is whose handshake slots a connection takes: its source
// address, every loopback address counting as one (code in the sandbox
// may dial from any of 127.0.0.0/8).
func sourceOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		if t.IP.IsLoopback() {
			return "loopback"
		}
		return t.IP.String()
	}
	return a.String()
}

// slots counts the handshakes in progress of each source address.
type slots struct {
	mu   sync.Mutex
	max  int
	used map[string]int
}

func newSlots(max int) *slots { return &slots{max: max, used: map[string]int{}} }

// take takes one of src's slots, false when it has none left.
func (s *slots) take(src string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used[src] >= s.max {
		return false
	}
	s.used[src]++
	return true
}

func (s *slots) give(src string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used[src]--; s.used[src] <= 0 {
		delete(s.used, src)
	}
}

// accept completes a connection's TLS handshake, then says hello.
func accept(ctx context.Context, c *tls.Conn, token string) (*yamux.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return hello(c, token)
}

// serverTLS is the agent's TLS configuration from the files in dir.
func serverTLS(dir string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, wire.CertName), filepath.Join(dir, wire.KeyName))
	if err != nil {
		return nil, err
	}
	id, err := wire.SandboxOfAgent(pair.Leaf)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, wire.CAName))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate in " + wire.CAName)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		// Any certificate is asked for, and VerifyConnection checks its chain
		// and its name: bothy's, for this sandbox.
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: wire.VerifyPeer(roots, wire.BothyIdentity(id), x509.ExtKeyUsageClientAuth),
	}, nil
}

// KEPConfig reads what bothy wrote beside socket of the standard runtime
// interface; ok is false when it asked for none.
func KEPConfig(socket string) (cfg wire.KEPConfig, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(socket), wire.KEPName))
	if errors.Is(err, os.ErrNotExist) {
		return cfg, false, nil
	}
	if err != nil {
		return cfg, false, err
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, false, fmt.Errorf("%s: %w", wire.KEPName, err)
	}
	return cfg, true, nil
}
