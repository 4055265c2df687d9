package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/web"
)

// chromium finds Debian's chromium; under CI its absence fails the test.
func chromium(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("BOTHY_REQUIRE_DOCKER") != "" {
			t.Fatal("chromium is required (scripts/browser.sh installs it)")
		}
		t.Skip("no chromium")
	}
	return p
}

// browserTest is the set-up of a test that drives the web UI: the engine,
// Chromium, and the UI's npm assets built into the binary. It returns the
// browser's path.
func browserTest(t *testing.T) string {
	t.Helper()
	testenv.Docker(t)
	browser := chromium(t)
	if !web.Built() {
		t.Fatal("the web UI's npm assets are missing: run make build (scripts/web.sh) before the tests")
	}
	return browser
}

// newBrowser starts headless Chromium for the test, and a function that
// saves a screenshot among the test's artifacts.
func newBrowser(t *testing.T, browser string) (context.Context, func(name string)) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 150*time.Second)
	t.Cleanup(cancelTimeout)
	shot := func(name string) {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("screenshot %s: %v", name, err)
			return
		}
		p := filepath.Join(t.ArtifactDir(), name)
		if err := os.WriteFile(p, png, 0o644); err == nil {
			t.Logf("screenshot: %s", p)
		}
	}
	return ctx, shot
}

// TestWebUITerminal drives the web UI in headless Chromium as a person would:
// enter the key, create a sandbox, open its terminal, type, read the answer.
func TestWebUITerminal(t *testing.T) {
	browser := browserTest(t)
	const key = "e2e-browser-key-0123456789abcdef"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data,
		"BOTHY_ADMIN_KEY="+key, "BOTHY_DEFAULT_IMAGE=bothy/busybox")

	ctx, shot := newBrowser(t, browser)
	type css = chromedp.CSS

	if err := chromedp.Do(ctx, chromedp.Navigate(d.url), chromedp.WaitVisible(css("#key-input"))); err != nil {
		t.Fatal(err)
	}
	shot("login.png")
	err := chromedp.Do(ctx,
		chromedp.SendKeys(css("#key-input"), key),
		chromedp.Click(css("#key-save")),
		chromedp.WaitVisible(css("#create")),
		chromedp.WaitReady(css(`#create-image option[value="bothy/busybox:latest"]`)),
		chromedp.SetValue(css("#create-image"), "bothy/busybox:latest"),
		chromedp.SetValue(css("#create-memory"), "256"),
		chromedp.Click(css("#create")),
		chromedp.WaitVisible(css(`#sandboxes tr[data-state="running"] .terminal-btn`)),
		chromedp.Click(css(`#sandboxes tr[data-state="running"] .terminal-btn`)),
		chromedp.WaitVisible(css("#terminal .xterm")),
	)
	if err != nil {
		shot("failed.png")
		t.Fatalf("open the terminal: %v", err)
	}
	screen := func() string {
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("#terminal .xterm-rows")||{}).innerText||""`))
		return s
	}
	waitScreen := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(screen(), want) {
			if time.Now().After(deadline) {
				shot("failed.png")
				t.Fatalf("no %q in the terminal: %q", want, screen())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The shell's prompt shows the terminal is live before typing.
	waitScreen("#")
	// Text goes in as a keyboard's input would (Input.insertText), Enter as a
	// key press.
	typeLine := func(text string) {
		t.Helper()
		insert := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: text})
			return err
		})
		if err := chromedp.Do(ctx,
			chromedp.Focus(css("#terminal .xterm-helper-textarea")),
			insert,
			chromedp.KeyEvent(kb.Enter),
		); err != nil {
			t.Fatal(err)
		}
	}
	typeLine("echo $((6*7))")
	waitScreen("\n42")
	shot("terminal.png")

	// A window resize reaches the terminal: the shell sees the new size.
	cols, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelector("#terminal .xterm-screen").clientWidth`))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(560, 800)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		w, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelector("#terminal .xterm-screen").clientWidth`))
		if w < cols {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the terminal did not shrink with the window (%d px)", w)
		}
		time.Sleep(50 * time.Millisecond)
	}
	termCols, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.bothyTerminal ? window.bothyTerminal.cols : 0`))
	if err != nil || termCols == 0 {
		t.Fatalf("terminal columns: %d %v", termCols, err)
	}
	typeLine("stty size")
	waitScreen(fmt.Sprintf(" %d\n", termCols))
	status, err := chromedp.Run(ctx, chromedp.Text(css("#terminal-status")))
	if err != nil || !strings.HasPrefix(status, "session pty-") {
		t.Fatalf("terminal status %q %v", status, err)
	}
	shot("resized.png")

	// The file browser beside the terminal: a file made in the terminal opens
	// in the viewer; an upload appears in the listing and in the sandbox.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1400, 900)); err != nil {
		t.Fatal(err)
	}
	typeLine("echo hello-from-the-shell > /root/note.txt && echo written-$((2+3))")
	waitScreen("written-5")
	upload := filepath.Join(t.TempDir(), "uploaded.txt")
	if err := os.WriteFile(upload, []byte("uploaded through the browser\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(css("#files-go")),
		chromedp.WaitVisible(css(`#files tr[data-name="note.txt"] td.name a`)),
		chromedp.Click(css(`#files tr[data-name="note.txt"] td.name a`)),
		chromedp.WaitVisible(css("#viewer-text")),
		chromedp.SetUploadFiles(css("#files-upload"), []string{upload}),
		chromedp.WaitVisible(css(`#files tr[data-name="uploaded.txt"]`)),
	)
	if err != nil {
		shot("failed.png")
		t.Fatalf("file browser: %v", err)
	}
	viewer, err := chromedp.Run(ctx, chromedp.Text(css("#viewer-text")))
	if err != nil || !strings.Contains(viewer, "hello-from-the-shell") {
		t.Fatalf("viewer shows %q (%v)", viewer, err)
	}
	typeLine("cat /root/uploaded.txt")
	waitScreen("uploaded through the browser")
	// A download is a fetch of the file with the key, as the page does it.
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => {
		const id = document.querySelector("#sandboxes tr[data-id]").dataset.id;
		const r = await fetch("/v1/sandboxes/" + id + "/files?path=/root/note.txt",
			{headers: {Authorization: "Bearer " + localStorage.getItem("bothy.key")}});
		return await r.text();
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || got != "hello-from-the-shell\n" {
		t.Fatalf("download from the page: %q %v", got, err)
	}
	shot("files.png")
}

// TestWebUIProcessesAndPorts: in the web UI, a person starts a background
// process and watches its log follow, kills it, starts a web server, exposes
// its port and opens the link (the host form under *.localhost, which
// Chromium resolves to this machine) to see the server's page.
func TestWebUIProcessesAndPorts(t *testing.T) {
	browser := browserTest(t)
	const key = "e2e-browser-ports-0123456789abcd"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data,
		"BOTHY_ADMIN_KEY="+key, "BOTHY_DEFAULT_IMAGE=bothy/busybox", "BOTHY_PREVIEW_DOMAIN=localhost")
	c := api.NewClient(d.url, key)
	bg := context.Background()
	sb, err := c.CreateSandbox(bg, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Exec(bg, sb.ID, api.ExecRequest{Shell: "mkdir -p /www && echo '<h1>hello from the sandbox</h1>' > /www/index.html"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("setup: %+v %v", res, err)
	}

	ctx, shot := newBrowser(t, browser)
	type css = chromedp.CSS
	text := func(sel string) string {
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector(`+strconv.Quote(sel)+`)||{}).textContent||""`))
		return s
	}
	waitText := func(sel, want string) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !strings.Contains(text(sel), want); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				shot("failed.png")
				t.Fatalf("no %q in %s: %q", want, sel, text(sel))
			}
		}
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(d.url),
		chromedp.WaitVisible(css("#key-input")),
		chromedp.SendKeys(css("#key-input"), key),
		chromedp.Click(css("#key-save")),
		chromedp.WaitVisible(css(`#sandboxes tr[data-state="running"] .terminal-btn`)),
		chromedp.Click(css(`#sandboxes tr[data-state="running"] .terminal-btn`)),
		chromedp.WaitVisible(css("#proc-cmd")),
		chromedp.SendKeys(css("#proc-cmd"), `i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.1; done`),
		chromedp.SendKeys(css("#proc-tag"), "ticker"),
		chromedp.Click(css("#proc-start")),
		chromedp.WaitVisible(css("#log-text")),
	)
	if err != nil {
		shot("failed.png")
		t.Fatalf("start a process: %v", err)
	}
	// The log view follows: later lines arrive without a reload.
	waitText("#log-text", "tick-3\n")
	waitText("#log-text", "tick-12\n")
	waitText(`#procs tr[data-tag="ticker"]`, "running")
	shot("process.png")
	if err := chromedp.Do(ctx, chromedp.Click(css(`#procs tr[data-tag="ticker"] .kill-btn`))); err != nil {
		t.Fatal(err)
	}
	waitText("#log-status", "killed (SIGKILL)")
	waitText(`#procs tr[data-tag="ticker"]`, "killed")
	// A process that ends well is shown as done, not as a warning.
	err = chromedp.Do(ctx,
		chromedp.SendKeys(css("#proc-cmd"), "echo finished"),
		chromedp.SendKeys(css("#proc-tag"), "once"),
		chromedp.Click(css("#proc-start")),
		chromedp.WaitVisible(css(`#procs tr[data-tag="once"] .state.done`)),
	)
	if err != nil {
		shot("failed.png")
		t.Fatalf("a process that exits 0: %v (%q)", err, text(`#procs tr[data-tag="once"]`))
	}

	// A web server, its port exposed from the page, opened by its link.
	err = chromedp.Do(ctx,
		chromedp.SendKeys(css("#proc-cmd"), "exec httpd -f -p 8000 -h /www"),
		chromedp.Click(css("#proc-start")),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitPort(bg, sb.ID, 8000, time.Minute); err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(css("#port-number"), "8000"),
		chromedp.Click(css("#port-expose")),
		chromedp.WaitVisible(css(`#ports tr[data-port="8000"] a`)),
	)
	if err != nil {
		shot("failed.png")
		t.Fatalf("expose: %v", err)
	}
	shot("ports.png")
	// On a narrow screen nothing runs off to the side, and the log's
	// header keeps its title, status and button on one line. The terminal
	// refits at the window's resize event, which comes after the viewport
	// changes: the check waits for it.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(420, 900)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		wide, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => {
			const w = document.documentElement.clientWidth;
			const clipped = (e) => { for (let p = e.parentElement; p; p = p.parentElement) if (getComputedStyle(p).overflowX !== 'visible') return true; return false; };
			const out = [...document.querySelectorAll('body *')].filter((e) => e.getClientRects().length && e.getBoundingClientRect().right > w + 1 && !clipped(e))
				.map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ')[0] : ''));
			if (document.documentElement.scrollWidth > w) out.push('the page: ' + document.documentElement.scrollWidth + ' > ' + w);
			return out;
		})()`))
		if err == nil && len(wide) == 0 {
			break
		}
		if err != nil || time.Now().After(deadline) {
			shot("narrow.png")
			t.Fatalf("at 420 px these run off to the side: %v %v", wide, err)
		}
	}
	// One line: every part centred on the same line, none wrapped.
	oneLine, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		const parts = [...document.querySelectorAll('#log .viewer-bar > *')];
		const mids = parts.map((e) => { const r = e.getBoundingClientRect(); return (r.top + r.bottom) / 2; });
		return Math.max(...mids) - Math.min(...mids) <= 4 && parts.every((e) => e.getClientRects().length <= 1);
	})()`))
	if err != nil || !oneLine {
		shot("narrow.png")
		t.Fatalf("at 420 px the log's header is not one line: %v", err)
	}
	shot("narrow.png")
	if err := chromedp.Do(ctx, chromedp.EmulateReset()); err != nil {
		t.Fatal(err)
	}
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#ports tr[data-port="8000"] a').href`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(href, "http://8000-"+sb.ID+".localhost:") || !strings.Contains(href, "bothy_token=pt_") {
		t.Fatalf("the port's link: %q", href)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(href), chromedp.WaitVisible(css("h1"))); err != nil {
		shot("failed.png")
		t.Fatalf("open the port's link: %v", err)
	}
	waitText("h1", "hello from the sandbox")
	// The token left the address for an HttpOnly cookie that the page
	// cannot read.
	where, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + " " + document.cookie`))
	if err != nil || strings.Contains(where, "bothy_token") || strings.Contains(where, "pt_") {
		t.Fatalf("after the link: %q %v", where, err)
	}
	shot("preview.png")
}

// TestWebUISnapshots drives the Snapshots tab: checkpoint a sandbox, change a
// file, restore the snapshot in place, branch a new sandbox from it, delete
// it; and checks the key is kept for the browser, not per tab, and that the
// terminal's header stays on one line.
func TestWebUISnapshots(t *testing.T) {
	browser := browserTest(t)
	const key = "e2e-browser-snaps-0123456789abc"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data,
		"BOTHY_ADMIN_KEY="+key, "BOTHY_DEFAULT_IMAGE=bothy/busybox")
	c := api.NewClient(d.url, key)
	bg := context.Background()
	sb, err := c.CreateSandbox(bg, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	write := func(id, content string) {
		t.Helper()
		if _, err := c.WriteFile(bg, id, "/tmp/state", strings.NewReader(content), api.WriteOptions{Parents: true}); err != nil {
			t.Fatal(err)
		}
	}
	readState := func(id string) string {
		var b strings.Builder
		if _, err := c.ReadFile(bg, id, "/tmp/state", &b); err != nil {
			return err.Error()
		}
		return b.String()
	}
	write(sb.ID, "before")

	ctx, shot := newBrowser(t, browser)
	type css = chromedp.CSS
	eval := func(js string) string {
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		return s
	}
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !ok(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				shot("failed.png")
				t.Fatalf("%s: not within a minute", what)
			}
		}
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(d.url),
		chromedp.WaitVisible(css("#key-input")),
		chromedp.SendKeys(css("#key-input"), key),
		chromedp.Click(css("#key-save")),
		chromedp.WaitVisible(css(`#sandboxes tr[data-state="running"] .terminal-btn`)),
	)
	if err != nil {
		shot("failed.png")
		t.Fatal(err)
	}

	// A second tab of the same browser finds the key.
	tab2, cancel := chromedp.NewContext(ctx)
	err = chromedp.Do(tab2, chromedp.Navigate(d.url), chromedp.WaitVisible(css(`#sandboxes tr[data-id="`+sb.ID+`"]`)))
	cancel()
	if err != nil {
		t.Fatalf("a second tab did not get the key: %v", err)
	}

	// The terminal's header keeps to one line.
	if err := chromedp.Do(ctx, chromedp.Click(css(`#sandboxes tr[data-id="`+sb.ID+`"] .terminal-btn`)), chromedp.WaitVisible(css("#terminal .xterm"))); err != nil {
		t.Fatal(err)
	}
	until("the terminal's session", func() bool {
		return strings.Contains(eval(`document.querySelector("#terminal-status").textContent`), "session")
	})
	barHeight, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector(".terminal-bar").getBoundingClientRect().height`))
	buttonHeight, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector("#terminal-close").getBoundingClientRect().height`))
	if barHeight == 0 || barHeight > 1.5*buttonHeight {
		t.Errorf("the terminal's header is %.0f px high, its buttons %.0f px: it wraps", barHeight, buttonHeight)
	}

	// Checkpoint from the Snapshots tab.
	eval(`window.confirm = () => true; ""`)
	err = chromedp.Do(ctx,
		chromedp.Click(css(`#tabs [data-tab="snapshots"]`)),
		chromedp.WaitVisible(css("#snap-form")),
		chromedp.SetValue(css("#snap-sandbox"), sb.ID),
		chromedp.SendKeys(css("#snap-name"), "ui-snap"),
		chromedp.Click(css("#snap-create")),
		chromedp.WaitVisible(css(`#snapshots tr[data-name="ui-snap"] .restore-btn`)),
	)
	if err != nil {
		shot("failed.png")
		t.Fatalf("checkpoint: %v", err)
	}
	shot("snapshots.png")
	list, err := c.ListSnapshots(bg, sb.ID)
	if err != nil || len(list.Snapshots) != 1 || list.Snapshots[0].Name != "ui-snap" {
		t.Fatalf("after the checkpoint: %+v %v", list, err)
	}
	snap := list.Snapshots[0].ID

	// Change the file, restore in place from the page.
	write(sb.ID, "after")
	if err := chromedp.Do(ctx, chromedp.Click(css(`#snapshots tr[data-name="ui-snap"] .restore-btn`))); err != nil {
		t.Fatal(err)
	}
	until("the restore", func() bool { return readState(sb.ID) == "before" })

	// Branch a new sandbox from it.
	if err := chromedp.Do(ctx, chromedp.Click(css(`#snapshots tr[data-name="ui-snap"] .branch-btn`))); err != nil {
		t.Fatal(err)
	}
	var branch string
	until("the branch", func() bool {
		page, err := c.ListSandboxes(bg, api.ListOptions{})
		if err != nil {
			return false
		}
		for _, s := range page.Sandboxes {
			if s.ID != sb.ID && s.State == api.StateRunning {
				branch = s.ID
			}
		}
		return branch != ""
	})
	if got := readState(branch); got != "before" {
		t.Fatalf("the branch has %q", got)
	}

	// Deleting it is refused while sandboxes use it, and the page says so;
	// once they are gone it goes.
	if err := chromedp.Do(ctx, chromedp.Click(css(`#snapshots tr[data-name="ui-snap"] .danger`))); err != nil {
		t.Fatal(err)
	}
	until("the refusal", func() bool {
		return strings.Contains(eval(`document.querySelector("#snap-error").textContent`), "in use")
	})
	for _, id := range []string{sb.ID, branch} {
		if err := c.DeleteSandbox(bg, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Click(css(`#snapshots tr[data-name="ui-snap"] .danger`))); err != nil {
		t.Fatal(err)
	}
	until("the delete", func() bool {
		_, err := c.GetSnapshot(bg, snap)
		return api.IsNotFound(err)
	})

	// The other tabs render; the Keys tab shows for an admin key.
	for _, tab := range []string{"apps", "usage", "keys"} {
		if err := chromedp.Do(ctx, chromedp.Click(css(`#tabs [data-tab="`+tab+`"]`)), chromedp.WaitVisible(css("#tab-"+tab))); err != nil {
			shot("failed.png")
			t.Fatalf("tab %s: %v", tab, err)
		}
	}
	until("the keys list", func() bool {
		n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#keys tbody tr").length`))
		return n >= 1
	})
	shot("keys.png")
}
