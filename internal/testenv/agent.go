package testenv

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bothy/bothy/agent/server"
	"github.com/bothy/bothy/agent/wire"

	"github.com/bothy/bothy/agent"
)

// AgentConn is a channel to a sandbox agent served in this test process,
// as the host side of a sandbox's channel sees it. The agent runs as this
// process's user, on the host's files.
func AgentConn(t testing.TB) *agent.Conn {
	t.Helper()
	log := Logger(t)
	sock := filepath.Join(t.TempDir(), wire.SocketName)
	const token = "test-token"
	ep, err := agent.Listen(sock, token, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewServer(log)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); server.Dial(ctx, sock, token, srv, log) }()
	t.Cleanup(func() {
		cancel()
		ep.Close()
		wg.Wait()
		srv.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	conn, err := ep.Conn(wctx)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}
