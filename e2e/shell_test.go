package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// TestShellThroughARealTerminal runs `sbx shell` on a pseudo-terminal, as a
// person at a terminal would: types a command, reads the answer, exits.
func TestShellThroughARealTerminal(t *testing.T) {
	const key = "e2e-shell-key-0123456789abcdef"
	d, sb := startWithSandbox(t, key)

	cmd := exec.Command(filepath.Join(binaries(t), "sbx"), "shell", sb.ID)
	cmd.Env = append(os.Environ(), "SANDBOXD_URL="+d.url, "SANDBOXD_KEY="+key, "TERM=xterm")
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
					t.Fatalf("sbx ended before %q appeared: %q", want, screen.String())
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
		t.Fatalf("sbx shell exited with %v, want 5; screen %q", err, screen.String())
	}
	// sbx put the terminal back in cooked mode on its way out.
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&unix.ECHO == 0 || tio.Lflag&unix.ICANON == 0 {
		t.Fatalf("terminal left in raw mode: lflag %#x", tio.Lflag)
	}
}
