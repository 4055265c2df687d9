package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/agent/wire"
	"github.com/bothy/bothy/internal/testcert"
)

// networked is an agent on the network transport, served in this process
// with the credentials of sandbox id from a CA in caDir.
type networked struct {
	ca    *agent.CA
	caDir string
	cr    *agent.Credentials
	addr  string
}

func serveNetworked(t *testing.T, id string) *networked {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n := &networked{caDir: t.TempDir()}
	var err error
	if n.ca, err = agent.OpenCA(n.caDir); err != nil {
		t.Fatal(err)
	}
	if n.cr, err = n.ca.Issue(id); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := agent.WriteToken(dir, "secret", os.Getuid()); err != nil {
		t.Fatal(err)
	}
	if err := agent.WriteCredentials(dir, n.cr, os.Getuid()); err != nil {
		t.Fatal(err)
	}
	// A free port instead of the agent's own, which the host may use.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if err := os.WriteFile(filepath.Join(dir, wire.ListenName), []byte(strconv.Itoa(port)), 0o644); err != nil {
		t.Fatal(err)
	}
	n.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	socket := filepath.Join(dir, wire.SocketName)
	if !Networked(socket) {
		t.Fatal("the agent does not see the network transport's files")
	}
	srv := NewServer(log)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := ListenTLS(ctx, "", socket, "secret", srv, log); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		srv.Close()
	})
	return n
}

// endpoint is bothy's endpoint for sandbox id, dialling addr.
func (n *networked) endpoint(t *testing.T, id string, cr *agent.Credentials, addr string) *agent.Endpoint {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ep := agent.DialTLS(id, func(context.Context) (string, error) { return addr, nil }, n.ca, cr, "secret", log)
	t.Cleanup(func() { ep.Close() })
	return ep
}

func TestNetworkTransportServesBothy(t *testing.T) {
	n := serveNetworked(t, "sb-a")
	ep := n.endpoint(t, "sb-a", n.cr, n.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := ep.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, out, _ := run(t, conn, wire.ExecRequest{Argv: []string{"echo", "over tls"}}, nil)
	if res.ExitCode != 0 || out != "over tls\n" {
		t.Fatalf("exec over the network transport: %+v %q", res, out)
	}
	// A dropped connection is dialled again by the next caller.
	ep.Drop()
	if conn, err = ep.Conn(ctx); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNetworkTransportRefusesStrangers(t *testing.T) {
	n := serveNetworked(t, "sb-a")
	// The agent is up: bothy's own connection works.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.endpoint(t, "sb-a", n.cr, n.addr).Conn(ctx); err != nil {
		t.Fatal(err)
	}
	caCert, caKey := loadCA(t, n.caDir)
	forgedCert, forgedKey := testcert.CA(t)
	other, err := n.ca.Issue("sb-b")
	if err != nil {
		t.Fatal(err)
	}
	agentPair, err := tls.X509KeyPair(n.cr.AgentCert, n.cr.AgentKey)
	if err != nil {
		t.Fatal(err)
	}
	otherAgent, err := tls.X509KeyPair(other.AgentCert, other.AgentKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no certificate", nil},
		{"bothy's name from a CA of its own", []tls.Certificate{testcert.Pair(t, forgedCert, forgedKey, wire.BothyIdentity("sb-a"), x509.ExtKeyUsageClientAuth)}},
		{"bothy's name, self-signed", []tls.Certificate{selfSignedLeaf(t, wire.BothyIdentity("sb-a"))}},
		{"bothy's certificate for another sandbox", []tls.Certificate{testcert.Pair(t, caCert, caKey, wire.BothyIdentity("sb-b"), x509.ExtKeyUsageClientAuth)}},
		{"the agent's own certificate, taken from the sandbox", []tls.Certificate{agentPair}},
		{"another sandbox's agent certificate", []tls.Certificate{otherAgent}},
		{"the agent's name for client use", []tls.Certificate{testcert.Pair(t, caCert, caKey, wire.AgentIdentity("sb-a"), x509.ExtKeyUsageClientAuth)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", n.addr, &tls.Config{Certificates: c.certs, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
			if err != nil {
				return // refused in the handshake
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			var h wire.Hello
			if err := wire.ReadJSON(conn, &h); err == nil || h.Token != "" {
				t.Fatalf("the agent said hello to a stranger: %+v %v", h, err)
			}
		})
	}
	// Plain TCP gets nothing either.
	raw, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = raw.Write([]byte("J\x00\x00\x00\x02{}"))
	if b, _ := io.ReadAll(raw); len(b) > 0 && string(b[:1]) == "J" {
		t.Fatalf("plain TCP got a frame: %q", b)
	}
}

func TestNetworkTransportRefusesAnImpostorAgent(t *testing.T) {
	n := serveNetworked(t, "sb-a")
	// An impostor listens with sandbox b's agent certificate (from the same
	// CA), takes any client and says hello with the right token.
	other, err := n.ca.Issue("sb-b")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(other.AgentCert, other.AgentKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	said := make(chan bool, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				err := wire.WriteJSON(c, wire.Hello{Version: wire.ProtocolVersion, Token: "secret"})
				var w wire.Welcome
				said <- err == nil && wire.ReadJSON(c, &w) == nil && w.Error == ""
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := n.endpoint(t, "sb-a", n.cr, ln.Addr().String()).Conn(ctx); err == nil {
		t.Fatal("bothy took another sandbox's agent for sandbox a's")
	}
	for {
		select {
		case welcomed := <-said:
			if welcomed {
				t.Fatal("bothy welcomed the impostor")
			}
		default:
			return
		}
	}
}

// loadCA reads the CA agent.OpenCA keeps in dir.
func loadCA(t *testing.T, dir string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf, pair.PrivateKey.(*ecdsa.PrivateKey)
}

func selfSignedLeaf(t *testing.T, name string) tls.Certificate {
	t.Helper()
	ca, key := testcert.CA(t)
	return testcert.Pair(t, ca, key, name, x509.ExtKeyUsageClientAuth)
}
