package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
)

// followUntil follows a process's logs until its output (both streams)
// holds want, then stops, and returns the output and the records seen.
func followUntil(t *testing.T, c *api.Client, id string, pid int, from int64, want string) (string, []api.LogRecord) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	var recs []api.LogRecord
	found := errors.New("found")
	err := c.ProcessLogs(ctx, id, pid, from, true, func(r api.LogRecord) error {
		recs = append(recs, r)
		out.WriteString(r.Data)
		if strings.Contains(out.String(), want) {
			return found
		}
		return nil
	})
	if !errors.Is(err, found) {
		t.Fatalf("following %d for %q: %v after %q", pid, want, err, out.String())
	}
	return out.String(), recs
}

func TestBackgroundProcessesThroughTheAPI(t *testing.T) {
	onBothEngines(t, checkBackgroundProcessesThroughTheAPI)
}

func checkBackgroundProcessesThroughTheAPI(t *testing.T, f *fixture) {
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)

	// A server-like process: it says it started, then runs until killed.
	p, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Shell: "echo started; echo warming >&2; exec sleep 1000", Tag: "web"})
	if err != nil || p.PID == 0 || p.State != "running" || p.Tag != "web" {
		t.Fatalf("start: %+v %v", p, err)
	}
	out, _ := followUntil(t, c, sb.ID, p.PID, 0, "started")
	if !strings.HasPrefix(out, "started") && !strings.HasPrefix(out, "warming") {
		t.Fatalf("first output %q", out)
	}
	list, err := c.ListProcesses(ctx, sb.ID, "web")
	if err != nil || len(list.Processes) != 1 || list.Processes[0].PID != p.PID || list.Processes[0].State != "running" {
		t.Fatalf("list by tag: %+v %v", list, err)
	}
	if list, err := c.ListProcesses(ctx, sb.ID, "other"); err != nil || len(list.Processes) != 0 {
		t.Fatalf("list by another tag: %+v %v", list, err)
	}
	if got, err := c.WaitProcess(ctx, sb.ID, p.PID, 10*time.Millisecond); err != nil || got.State != "running" {
		t.Fatalf("wait with a timeout: %+v %v", got, err)
	}
	// Only stderr, from the start, without following: the record carries
	// its offset in the whole output.
	resp := get(t, f.url+"/v1/sandboxes/"+sb.ID+"/processes/"+strconv.Itoa(p.PID)+"/logs?stream=stderr", f.user)
	if resp.code != http.StatusOK || !strings.Contains(resp.body, `"stream":"stderr"`) || strings.Contains(resp.body, `"stream":"stdout"`) ||
		!strings.Contains(resp.body, `"type":"end"`) {
		t.Fatalf("stderr only: %d %s", resp.code, resp.body)
	}
	killed, err := c.KillProcess(ctx, sb.ID, p.PID)
	if err != nil || killed.State != "exited" || killed.Signal != "SIGKILL" || killed.EndedAt == nil {
		t.Fatalf("kill: %+v %v", killed, err)
	}

	// stdin: cat echoes what is written; closing stdin ends it with 0.
	cat, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Cmd: []string{"cat"}, Stdin: true})
	if err != nil || !cat.StdinOpen {
		t.Fatalf("start cat: %+v %v", cat, err)
	}
	if _, err := c.WriteStdin(ctx, sb.ID, cat.PID, []byte("ping\x00\xff\n")); err != nil {
		t.Fatal(err)
	}
	if out, _ := followUntil(t, c, sb.ID, cat.PID, 0, "\n"); out != "ping\x00\xff\n" {
		t.Fatalf("cat echoed %q", out)
	}
	if _, err := c.CloseStdin(ctx, sb.ID, cat.PID); err != nil {
		t.Fatal(err)
	}
	done, err := c.WaitProcess(ctx, sb.ID, cat.PID, 0)
	if err != nil || done.State != "exited" || done.ExitCode == nil || *done.ExitCode != 0 {
		t.Fatalf("cat after stdin closed: %+v %v", done, err)
	}

	// A signal by name, to the whole group.
	trap, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Shell: "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 1; done"})
	if err != nil {
		t.Fatal(err)
	}
	followUntil(t, c, sb.ID, trap.PID, 0, "ready")
	if _, err := c.SignalProcess(ctx, sb.ID, trap.PID, "SIGTERM"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.WaitProcess(ctx, sb.ID, trap.PID, 0); err != nil || got.ExitCode == nil || (*got.ExitCode != 7 && got.Signal != "SIGTERM") {
		t.Fatalf("after SIGTERM: %+v %v", got, err)
	}

	// Bad input is a clear 4xx; another key sees nothing.
	var e *api.Error
	for name, err := range map[string]error{
		"unknown pid": func() error { _, err := c.GetProcess(ctx, sb.ID, 999999); return err }(),
		"both cmd and shell": func() error {
			_, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Cmd: []string{"true"}, Shell: "true"})
			return err
		}(),
		"no such program": func() error {
			_, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Cmd: []string{"no-such-program"}})
			return err
		}(),
		"log_bytes too small": func() error {
			_, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Cmd: []string{"true"}, LogBytes: 100})
			return err
		}(),
		"unknown signal":   func() error { _, err := c.SignalProcess(ctx, sb.ID, trap.PID, "SIGNOPE"); return err }(),
		"kill an exited":   func() error { _, err := c.KillProcess(ctx, sb.ID, cat.PID); return err }(),
		"stdin not opened": func() error { _, err := c.WriteStdin(ctx, sb.ID, trap.PID, []byte("x")); return err }(),
	} {
		if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 {
			t.Errorf("%s: %v, want a 4xx", name, err)
		}
	}
	// JSON carries only UTF-8: a tag of other bytes is refused, not mangled.
	req, _ := http.NewRequest(http.MethodPost, f.url+"/v1/sandboxes/"+sb.ID+"/processes", strings.NewReader("{\"shell\":\"true\",\"tag\":\"\xff\"}"))
	req.Header.Set("Authorization", "Bearer "+f.user)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Errorf("a non-UTF-8 tag: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if r := get(t, f.url+"/v1/sandboxes/"+sb.ID+"/processes/abc", f.user); r.code != 400 {
		t.Errorf("pid abc: %d %s", r.code, r.body)
	}
	if _, err := api.NewClient(f.url, f.admin).ListProcesses(ctx, sb.ID, ""); !api.IsNotFound(err) {
		t.Errorf("another key's list: %v", err)
	}
}

type answer struct {
	code int
	body string
}

func get(t *testing.T, url, key string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return answer{resp.StatusCode, b.String()}
}
