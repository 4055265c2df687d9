package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// TestShellThroughARealTerminal runs `bothy shell` on a pseudo-terminal, as a
// person at a terminal would: types a command, reads the answer, exits.
func TestShellThroughARealTerminal(t *testing.T) {
	const key = "e2e-shell-key-0123456789abcdef"
	d, sb := startWithSandbox(t, key)

	cmd := exec.Command(filepath.Join(binaries(t), "bothy"), "shell", sb.ID)
	cmd.Env = append(os.Environ(), "BOTHY_URL="+d.url, "BOTHY_KEY="+key, "TERM=xterm")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 100, Rows: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var screen bytes.Buffer
	output := make(chan []byte, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			if n > 0 {
				output <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				close(output)
				return
			}
		}
	}()
	waitScreen := func(want string) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for !strings.Contains(screen.String(), want) {
			select {
			case b, ok := <-output:
				if !ok {
					t.Fatalf("bothy ended before %q appeared: %q", want, screen.String())
				}
				screen.Write(b)
			case <-deadline:
				t.Fatalf("no %q on the screen: %q", want, screen.String())
			}
		}
	}
	tty.Write([]byte("stty size\r"))
	waitScreen("30 100")
	tty.Write([]byte("echo $((6*7))\r"))
	waitScreen("42")
	tty.Write([]byte("exit 5\r"))
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
		t.Fatalf("bothy shell exited with %v, want 5; screen %q", err, screen.String())
	}
	// bothy put the terminal back in cooked mode on its way out.
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&unix.ECHO == 0 || tio.Lflag&unix.ICANON == 0 {
		t.Fatalf("terminal left in raw mode: lflag %#x", tio.Lflag)
	}
}

// terminal is bothy running on a pseudo-terminal of its own.
type terminal struct {
	t      *testing.T
	cmd    *exec.Cmd
	tty    *os.File
	screen bytes.Buffer
	output chan []byte
}

func startTerminal(t *testing.T, url, key string, cols, rows uint16, args ...string) *terminal {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), "bothy"), args...)
	cmd.Env = append(os.Environ(), "BOTHY_URL="+url, "BOTHY_KEY="+key, "TERM=xterm")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: cols, Rows: rows})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	term := &terminal{t: t, cmd: cmd, tty: tty, output: make(chan []byte, 64)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			if n > 0 {
				term.output <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				close(term.output)
				return
			}
		}
	}()
	return term
}

func (term *terminal) wait(want string) {
	term.t.Helper()
	deadline := time.After(15 * time.Second)
	for !strings.Contains(term.screen.String(), want) {
		select {
		case b, ok := <-term.output:
			if !ok {
				term.t.Fatalf("bothy ended before %q appeared: %q", want, term.screen.String())
			}
			term.screen.Write(b)
		case <-deadline:
			term.t.Fatalf("no %q on the screen: %q", want, term.screen.String())
		}
	}
}

// TestShellDetachAndReattach: Ctrl-P Ctrl-Q leaves the session running and
// prints its ID, bothy pty ls lists it, and bothy shell --attach takes it up again
// at the new terminal's size, with its recent output replayed.
func TestShellDetachAndReattach(t *testing.T) {
	const key = "e2e-detach-key-0123456789abcdef"
	d, sb := startWithSandbox(t, key)

	first := startTerminal(t, d.url, key, 100, 30, "shell", sb.ID)
	first.tty.Write([]byte("echo mark-$((40+2))\r"))
	first.wait("mark-42")
	first.tty.Write([]byte{0x10, 0x11})
	first.wait("reattach with: bothy shell --attach ")
	if err := first.cmd.Wait(); err != nil {
		t.Fatalf("bothy shell after a detach: %v", err)
	}
	m := regexp.MustCompile(`detached from session (\S+) `).FindStringSubmatch(first.screen.String())
	if m == nil {
		t.Fatalf("no session ID on the screen: %q", first.screen.String())
	}
	session := m[1]

	out, errOut, code := bothy(t, d.url, key, "pty", "ls", sb.ID)
	if code != 0 || !strings.Contains(out, session) || !strings.Contains(out, "running") {
		t.Fatalf("bothy pty ls: %d %q %s", code, out, errOut)
	}

	second := startTerminal(t, d.url, key, 120, 40, "shell", "--attach", session, sb.ID)
	second.wait("mark-42") // replayed
	second.tty.Write([]byte("stty size\r"))
	second.wait("40 120")
	second.tty.Write([]byte("exit 0\r"))
	if err := second.cmd.Wait(); err != nil {
		t.Fatalf("bothy shell --attach: %v; screen %q", err, second.screen.String())
	}
}
