package shell

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/gorilla/websocket"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/orchestrator"
)

// oneSandbox is sandbox "sb-1" of key "k", whose agent serves this test
// process.
type oneSandbox struct{ conn *agent.Conn }

var (
	_ Sandboxes = oneSandbox{}
	_ Sandboxes = (*orchestrator.Orchestrator)(nil)
)

func (o oneSandbox) Attach(ctx context.Context, owner, id string, fn func(context.Context, orchestrator.Sandbox, *agent.Conn) error) error {
	if owner != "k" || id != "sb-1" {
		return cerrdefs.ErrNotFound.WithMessage("sandbox " + id + " not found")
	}
	return fn(ctx, orchestrator.Sandbox{ID: id, Owner: owner}, o.conn)
}

// serve puts s behind an HTTP server whose every request opens the
// terminal req names, and returns its WebSocket URL and the errors Serve
// returned before an upgrade.
func serve(t *testing.T, s *Service, req Request) (string, chan error) {
	t.Helper()
	refused := make(chan error, 10)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rq := req
		rq.Session, rq.Replay = r.URL.Query().Get("session"), true
		upgraded, err := s.Serve(r.Context(), "k", "sb-1", rq, func() (*websocket.Conn, error) { return up.Upgrade(w, r, nil) })
		if !upgraded {
			refused <- err
			http.Error(w, err.Error(), http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), refused
}

// readUntil reads terminal output until it holds want, and returns the
// session's first message.
func readUntil(t *testing.T, ws *websocket.Conn, want string) {
	t.Helper()
	var out strings.Builder
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for !strings.Contains(out.String(), want) {
		kind, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %q after %q: %v", want, out.String(), err)
		}
		if kind == websocket.BinaryMessage {
			out.Write(b)
		}
	}
}

func TestSessionsOpenListReattachAndEnd(t *testing.T) {
	s := New(oneSandbox{conn: testenv.AgentConn(t)}, testenv.Logger(t))
	ctx := context.Background()
	url, refused := serve(t, s, Request{Argv: []string{"/bin/sh"}, Cols: 100, Rows: 30, Cwd: "/"})

	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	var hello api.PtyMessage
	if err := ws.ReadJSON(&hello); err != nil || hello.Type != "session" || hello.ID == "" || hello.Cols != 100 {
		t.Fatalf("first message: %+v, %v", hello, err)
	}
	_ = ws.WriteMessage(websocket.BinaryMessage, []byte("echo hi-$((20+22))\n"))
	readUntil(t, ws, "hi-42")
	list, err := s.List(ctx, "k", "sb-1")
	if err != nil || len(list) != 1 || list[0].ID != hello.ID || list[0].Viewers != 1 {
		t.Fatalf("list: %+v, %v", list, err)
	}
	ws.Close() // a detach: the session goes on

	again, _, err := websocket.DefaultDialer.Dial(url+"?session="+hello.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	var hello2 api.PtyMessage
	if err := again.ReadJSON(&hello2); err != nil || hello2.ID != hello.ID {
		t.Fatalf("reattach: %+v, %v", hello2, err)
	}
	readUntil(t, again, "hi-42") // the replay
	_ = again.WriteMessage(websocket.BinaryMessage, []byte("exit 3\n"))
	for {
		kind, b, err := again.ReadMessage()
		if err != nil {
			t.Fatalf("no exit message: %v", err)
		}
		var m api.PtyMessage
		if kind == websocket.TextMessage && json.Unmarshal(b, &m) == nil && m.Type == "exit" {
			if m.ExitCode == nil || *m.ExitCode != 3 {
				t.Fatalf("exit: %+v", m)
			}
			break
		}
	}

	if _, _, err := websocket.DefaultDialer.Dial(url+"?session=pty-nope", nil); err == nil {
		t.Fatal("reattached to a session that does not exist")
	}
	if err := <-refused; !cerrdefs.IsNotFound(err) {
		t.Fatalf("reattach to a missing session: %v, want not found", err)
	}
	if err := s.Kill(ctx, "k", "sb-1", "pty-nope"); !cerrdefs.IsNotFound(err) {
		t.Fatalf("kill of a missing session: %v, want not found", err)
	}
	if _, err := s.List(ctx, "other", "sb-1"); !cerrdefs.IsNotFound(err) {
		t.Fatalf("another key's list: %v", err)
	}
}
