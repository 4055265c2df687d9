package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/bothy/bothy/agent"
)

func TestDialPortCarriesBytesBothWaysWithHalfClose(t *testing.T) {
	c := pair(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		// Echo in upper case until the client's half-close, then say bye.
		b, _ := io.ReadAll(s)
		for i := range b {
			if b[i] >= 'a' && b[i] <= 'z' {
				b[i] -= 32
			}
		}
		s.Write(append(b, " bye"...))
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	conn, err := c.DialPort(context.Background(), port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if hc, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	} else {
		// A yamux stream's Close is a half-close: reading goes on.
		conn.Close()
	}
	got, err := io.ReadAll(bufio.NewReader(conn))
	if err != nil || string(got) != "HELLO bye" {
		t.Fatalf("read %q, %v", got, err)
	}
	ln.Close()
	if _, err := c.DialPort(context.Background(), port); !errors.Is(err, agent.ErrNotListening) {
		t.Fatalf("dial of a closed port: %v", err)
	}
	if _, err := c.DialPort(context.Background(), 70000); err == nil || errors.Is(err, agent.ErrNotListening) {
		t.Fatalf("dial of port 70000: %v", err)
	}
}
