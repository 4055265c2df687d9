// Package ptyfd holds what the in-sandbox agent's two terminal services
// (its own and the KEP-539.2 interface) do to a terminal's master end.
package ptyfd

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Pollable returns the terminal master f (which pty.Open left blocking, as
// any use of its Fd does) as a non-blocking descriptor in the runtime's
// poller, so that reads of it honour deadlines; f is closed.
func Pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("dup pty: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pty non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), nil
}

// SetSize sets a terminal's size through master's raw connection, which
// keeps it non-blocking (its Fd would not).
func SetSize(master *os.File, cols, rows uint16) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	}); err != nil {
		return err
	}
	return serr
}
