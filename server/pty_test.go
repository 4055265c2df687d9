package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
)

// readUntil reads terminal output until it contains want.
func readUntil(t *testing.T, p *api.PtyConn, want string) string {
	t.Helper()
	var got bytes.Buffer
	done := make(chan error, 1)
	go func() {
		for !strings.Contains(got.String(), want) {
			b, err := p.Read()
			if err != nil {
				done <- err
				return
			}
			got.Write(b)
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waiting for %q: %v (got %q)", want, err, got.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %q (got %q)", want, got.String())
	}
	return got.String()
}

func TestPtyOverWebSocket(t *testing.T) {
	onBothEngines(t, checkPtyOverWebSocket)
}

func checkPtyOverWebSocket(t *testing.T, f *fixture) {
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)
	p, err := c.DialPty(ctx, sb.ID, api.PtyOptions{Cmd: []string{"sh"}, Cols: 80, Rows: 24, Env: map[string]string{"COLOR": "teal"}, Cwd: "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	session := p.Session.ID
	p.Write([]byte("echo $COLOR-$(pwd)\n"))
	readUntil(t, p, "teal-/tmp")
	if session == "" || p.Session.PID == 0 {
		t.Fatalf("session message %+v", p.Session)
	}
	p.Write([]byte("echo $((6*7))\n"))
	readUntil(t, p, "42")
	p.Write([]byte("stty size\n"))
	readUntil(t, p, "24 80")
	if err := p.Resize(120, 33); err != nil {
		t.Fatal(err)
	}
	p.Write([]byte("stty size\n"))
	readUntil(t, p, "33 120")
	p.Write([]byte("echo mark-$((5*5))\n"))
	readUntil(t, p, "mark-25")
	p.Close() // detach

	// Reattach: the earlier output is replayed; a second viewer sees new output.
	a, err := c.DialPty(ctx, sb.ID, api.PtyOptions{Session: session})
	if err != nil {
		t.Fatal(err)
	}
	readUntil(t, a, "mark-25")
	b, err := c.DialPty(ctx, sb.ID, api.PtyOptions{Session: session, NoReplay: true})
	if err != nil {
		t.Fatal(err)
	}
	// The first viewer's detach reaches the agent when bothy reads its
	// close, a moment after the client sent it.
	for deadline := time.Now().Add(30 * time.Second); ; {
		list, err := c.ListPtySessions(ctx, sb.ID)
		if err == nil && len(list.Sessions) == 1 && list.Sessions[0].Viewers == 2 {
			break
		}
		if err != nil || len(list.Sessions) != 1 || time.Now().After(deadline) {
			t.Fatalf("sessions: %+v %v", list, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.Write([]byte("echo shared-$((3*4))\n"))
	readUntil(t, a, "shared-12")
	readUntil(t, b, "shared-12")

	// The exit message carries the exit code, to every viewer.
	a.Write([]byte("exit 7\n"))
	for _, v := range []*api.PtyConn{a, b} {
		for {
			_, err := v.Read()
			if errors.Is(err, api.ErrExited) {
				break
			}
			if err != nil {
				t.Fatalf("read before exit: %v", err)
			}
		}
		if code, _, ok := v.Exit(); !ok || code != 7 {
			t.Fatalf("exit %d %v", code, ok)
		}
	}
	if _, err := c.DialPty(ctx, sb.ID, api.PtyOptions{Session: "pty-nosuch"}); !api.IsNotFound(err) {
		t.Fatalf("attach to a missing session: %v", err)
	}
}

func TestPtyKillLeavesNoProcess(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)
	p, err := c.DialPty(ctx, sb.ID, api.PtyOptions{Cmd: []string{"sh"}})
	if err != nil {
		t.Fatal(err)
	}
	p.Write([]byte("sleep 1001 & setsid sleep 1002 & echo started\n"))
	readUntil(t, p, "started")
	if err := c.KillPtySession(ctx, sb.ID, p.Session.ID); err != nil {
		t.Fatal(err)
	}
	res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "ps -o pid,stat,args | grep -v grep | grep 'sleep 100' || true"})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && !strings.HasPrefix(f[1], "Z") {
			t.Fatalf("left behind: %q", res.Stdout)
		}
	}
	if list, _ := c.ListPtySessions(ctx, sb.ID); len(list.Sessions) != 0 {
		t.Fatalf("session still listed: %+v", list)
	}
	if err := c.KillPtySession(ctx, sb.ID, p.Session.ID); !api.IsNotFound(err) {
		t.Fatalf("killing it again: %v", err)
	}
}

func TestPtyCrossSiteChecks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	user := api.NewClient(f.url, f.user)
	admin := api.NewClient(f.url, f.admin)
	mine, theirs := mustCreate(t, user), mustCreate(t, admin)
	self := f.url // the server's own origin
	dial := func(sandbox, ticket, origin string, bearer string, extra ...string) error {
		hdr := http.Header{}
		for i := 0; i+1 < len(extra); i += 2 {
			hdr.Set(extra[i], extra[i+1])
		}
		if origin != "" {
			hdr.Set("Origin", origin)
		}
		if bearer != "" {
			hdr.Set("Authorization", "Bearer "+bearer)
		}
		u := user.PtyURL(sandbox, api.PtyOptions{Cmd: []string{"sh"}})
		if ticket != "" {
			u += "&ticket=" + ticket
		}
		p, err := api.DialPtyURL(ctx, u, hdr)
		if err == nil {
			p.Close()
		}
		return err
	}
	ticket := func(c *api.Client, id string) string {
		tk, err := c.PtyTicket(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return tk.Ticket
	}
	status := func(err error) int {
		var e *api.Error
		if errors.As(err, &e) {
			return e.Status
		}
		return 0
	}

	// A good ticket from the page's own origin opens a shell, once.
	good := ticket(user, mine.ID)
	if err := dial(mine.ID, good, self, ""); err != nil {
		t.Fatalf("valid ticket refused: %v", err)
	}
	// A ticket tried from a foreign origin is spent: it opens nothing later.
	spent := ticket(user, mine.ID)
	if err := dial(mine.ID, spent, "http://evil.example", ""); status(err) != 403 {
		t.Fatalf("foreign origin: %v", err)
	}
	_, port, _ := strings.Cut(strings.TrimPrefix(self, "http://"), ":")
	refusals := []struct {
		name   string
		err    error
		status int
	}{
		{"reused ticket", dial(mine.ID, good, self, ""), 401},
		{"wrong origin", dial(mine.ID, ticket(user, mine.ID), "http://evil.example", ""), 403},
		{"DNS rebinding: Host and Origin agree on a name", dial(mine.ID, ticket(user, mine.ID), "http://rebind.example:"+port, "", "Host", "rebind.example:"+port), 403},
		{"DNS rebinding with a key", dial(mine.ID, "", "http://rebind.example:"+port, f.user, "Host", "rebind.example:"+port), 403},
		{"ticket spent by a refused origin", dial(mine.ID, spent, self, ""), 401},
		{"wrong origin with a key", dial(mine.ID, "", "http://evil.example", f.user), 403},
		{"missing ticket", dial(mine.ID, "", self, ""), 401},
		{"ticket without origin", dial(mine.ID, ticket(user, mine.ID), "", ""), 403},
		{"made-up ticket", dial(mine.ID, "tkt_0123456789", self, ""), 401},
		{"ticket for another sandbox", dial(theirs.ID, ticket(user, mine.ID), self, ""), 401},
		{"ticket of another key", dial(mine.ID, ticket(admin, theirs.ID), self, ""), 401},
	}
	for _, r := range refusals {
		if r.err == nil || status(r.err) != r.status {
			t.Errorf("%s: got %v, want HTTP %d", r.name, r.err, r.status)
		}
	}
	// Another key cannot even get a ticket for my sandbox.
	if _, err := admin.PtyTicket(ctx, mine.ID); !api.IsNotFound(err) {
		t.Errorf("ticket for another key's sandbox: %v", err)
	}
	// An expired ticket.
	f.tickets.SetTTL(-time.Second) // expired as soon as it is issued
	expired := ticket(user, mine.ID)
	if err := dial(mine.ID, expired, self, ""); status(err) != 401 {
		t.Errorf("expired ticket: %v", err)
	}
	// Only the one good dial opened a session.
	list, err := user.ListPtySessions(ctx, mine.ID)
	if err != nil || len(list.Sessions) != 1 {
		t.Fatalf("sessions opened: %+v %v", list, err)
	}
	if list, _ := admin.ListPtySessions(ctx, theirs.ID); len(list.Sessions) != 0 {
		t.Fatalf("sessions opened on the other key's sandbox: %+v", list)
	}
}

// mustCreate makes a sandbox with the server's defaults.
func mustCreate(t *testing.T, c *api.Client) api.Sandbox {
	t.Helper()
	return mustCreateWith(t, c, api.CreateSandboxRequest{})
}

// mustCreateWith makes a sandbox.
func mustCreateWith(t *testing.T, c *api.Client, req api.CreateSandboxRequest) api.Sandbox {
	t.Helper()
	sb, err := c.CreateSandbox(context.Background(), req, "")
	if err != nil {
		t.Fatalf("create sandbox: %v", err)
	}
	return sb
}

// mustShell runs a shell line in a sandbox, which must succeed, and returns
// its output.
func mustShell(t *testing.T, c *api.Client, id, shell string) string {
	t.Helper()
	res, err := c.Exec(context.Background(), id, api.ExecRequest{Shell: shell})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%s: %v %+v", shell, err, res)
	}
	return res.Stdout
}
