package server

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// Spawn starts argv for another of the agent's front doors (the standard
// runtime interface, package kep) as root, in the absolute directory cwd,
// with the sandbox's environment and env, and files as its stdin, stdout
// and stderr: in a session of its own with files[0] as its controlling
// terminal when tty is set, in a process group of its own otherwise. The
// agent's reaper waits for it (the agent is PID 1): exit receives its wait
// status. A command that is not found is an error
// wrapping fs.ErrNotExist; one that cannot be run, fs.ErrPermission.
func (s *Server) Spawn(argv []string, env map[string]string, cwd string, files []*os.File, tty bool) (pid int, exit <-chan syscall.WaitStatus, err error) {
	cmd, code, err := s.command(argv, "", env, cwd)
	if err != nil {
		if code == 127 {
			return 0, nil, fmt.Errorf("%w: %v", fs.ErrNotExist, err)
		}
		return 0, nil, fmt.Errorf("%w: %v", fs.ErrPermission, err)
	}
	attr := cmd.attr(files...)
	if tty {
		attr.Sys.Setpgid = false
		attr.Sys.Setsid, attr.Sys.Setctty, attr.Sys.Ctty = true, true, 0
	}
	proc, waitCh, err := s.children().start(func() (*os.Process, error) {
		return os.StartProcess(cmd.path, argv, attr)
	})
	if err != nil {
		if os.IsPermission(err) {
			return 0, nil, fmt.Errorf("%w: %v", fs.ErrPermission, err)
		}
		return 0, nil, err
	}
	out := make(chan syscall.WaitStatus, 1)
	go func() { out <- (<-waitCh).status }()
	pid = proc.Pid
	_ = proc.Release() // the reaper waits for it
	return pid, out, nil
}
