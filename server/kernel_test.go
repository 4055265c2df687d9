package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/runtime/docker"
)

// hog takes, in a sandbox, all it can of the kernel's shared limits, as
// root and as three other users (it may switch: root in a sandbox keeps
// CAP_SETUID), holds it, and prints what it got: inotify instances and
// queued real-time signals per user, terminals, and whether a POSIX message
// queue opened.
const hog = `
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
def inotify():
    n = 0
    while libc.inotify_init() >= 0:
        n += 1
    return n
def sigq():
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
    n = 0
    while libc.sigqueue(os.getpid(), signal.SIGRTMIN, 0) == 0:
        n += 1
    return n
for uid in (0, 1000, 1001, 1002):
    r, w = os.pipe()
    if os.fork() == 0:
        os.setgid(uid); os.setuid(uid)
        os.write(w, ("uid %d inotify %d sigq %d\n" % (uid, inotify(), sigq())).encode())
        time.sleep(3600)
    sys.stdout.write(os.read(r, 200).decode())
ptys = []
try:
    while True:
        ptys.append(os.openpty())
except OSError:
    pass
print("ptys %d" % len(ptys))
rt = ctypes.CDLL("librt.so.1", use_errno=True)
rt.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
q = rt.mq_open(b"/hog", os.O_CREAT | os.O_RDWR, 0o600, None)
print("mqueue %s" % ("opened" if q >= 0 else "refused"))
sys.stdout.flush()
time.sleep(3600)
`

// TestSharedKernelLimitsAreShares: every sandbox runs as the same host
// user, in a user namespace that root on the host owns, so some of the
// kernel's limits are counters they all (and root) share. One sandbox takes
// every inotify instance, queued signal and terminal it can get, as four
// users; it gets its shares and no more, a POSIX message queue is refused
// to it, and another key's sandbox still watches files, runs timeout (a
// timer, which queues a signal) and opens a terminal, and root on the host
// still gets an inotify instance.
func TestSharedKernelLimitsAreShares(t *testing.T) {
	t.Parallel()
	f := newFullFixture(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	shares := docker.DefaultShares()
	hogBox := mustCreateWith(t, f.a, api.CreateSandboxRequest{Image: images.Base})
	p, err := f.a.StartProcess(ctx, hogBox.ID, api.StartProcessRequest{Cmd: []string{"python3", "-c", hog}})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := followUntil(t, f.a, hogBox.ID, p.PID, 0, "mqueue ")
	t.Logf("the hog got:\n%s", out)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var uid, ino, sigq, ptys int
		switch {
		case strings.HasPrefix(line, "uid "):
			if _, err := fmt.Sscanf(line, "uid %d inotify %d sigq %d", &uid, &ino, &sigq); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			if ino != shares.InotifyInstances {
				t.Errorf("uid %d got %d inotify instances, want its share, %d", uid, ino, shares.InotifyInstances)
			}
			if int64(sigq) != shares.SigPending {
				t.Errorf("uid %d queued %d signals, want its share, %d", uid, sigq, shares.SigPending)
			}
		case strings.HasPrefix(line, "ptys "):
			fmt.Sscanf(line, "ptys %d", &ptys)
			if ptys != shares.Ptys-1 && ptys != shares.Ptys {
				t.Errorf("the sandbox opened %d terminals, want its share, %d", ptys, shares.Ptys)
			}
		case strings.HasPrefix(line, "mqueue "):
			if line != "mqueue refused" {
				t.Errorf("a POSIX message queue: %s", line)
			}
		}
	}

	// Another key's sandbox, meanwhile.
	other := mustCreateWith(t, f.b, api.CreateSandboxRequest{Image: images.Base})
	if res, err := f.b.Exec(ctx, other.ID, api.ExecRequest{Shell: "timeout 5 true && python3 -c 'import os; os.openpty()'"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("timeout and a terminal in another sandbox: %+v %v", res, err)
	}
	seen := make(chan string, 16)
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = f.b.WatchFiles(wctx, other.ID, "/tmp", false, 0, func(e api.FileEvent) error {
			seen <- e.Path
			return nil
		})
	}()
	defer func() { wcancel(); wg.Wait() }()
	deadline := time.After(time.Minute)
	for done := false; !done; {
		if _, err := f.b.Exec(ctx, other.ID, api.ExecRequest{Shell: "echo x > /tmp/watched"}); err != nil {
			t.Fatal(err)
		}
		select {
		case path := <-seen:
			done = strings.HasSuffix(path, "/tmp/watched")
		case <-deadline:
			t.Fatal("another key's watch saw nothing in a minute")
		case <-time.After(200 * time.Millisecond):
		}
	}
	pty, err := f.b.DialPty(ctx, other.ID, api.PtyOptions{Cmd: []string{"sh"}})
	if err != nil {
		t.Fatalf("a terminal in another sandbox: %v", err)
	}
	pty.Close()

	// And root on the host.
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("root on the host: inotify_init1: %v", err)
	}
	unix.Close(fd)
	if err := f.a.DeleteSandbox(ctx, hogBox.ID); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
