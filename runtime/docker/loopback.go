package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	goruntime "runtime"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"
)

// loopbackBuffer is the receive and the send buffer of a connection to a
// container's loopback (the kernel caps it at net.core.rmem_max and
// wmem_max, 208 KiB by default). Set, they are fixed: the kernel's
// autotuning would let each connection whose client stops reading, or
// whose server does, hold up to tcp_rmem's or tcp_wmem's maximum (6 and
// 4 MiB) of the memory every socket shares. On the loopback device this
// keeps a stream at full speed.
const loopbackBuffer = 256 << 10

// loopbackDialTimeout bounds a connect to a container's loopback (a
// server whose backlog is full drops it, and the kernel tries again).
const loopbackDialTimeout = 5 * time.Second

// DialLoopback connects to TCP port on the loopback of container id's
// network namespace, from bothy's side: the socket is made in the
// container's namespace and is bothy's alone, and nothing the container
// runs takes part in the connection but its server. It fails with
// ECONNREFUSED (errors.Is) when nothing listens on 127.0.0.1 or ::1 at
// port, and with errors.ErrUnsupported where bothy cannot enter the
// namespace (it does not see the engine's, may not enter it, or the
// container shares the host's); any other error may pass.
func (d *Docker) DialLoopback(ctx context.Context, id string, port int) (net.Conn, error) {
	ns, err := d.netnsOf(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unix.Close(ns)
	c, err := dialIn(ctx, ns, unix.AF_INET, port)
	if errors.Is(err, unix.ECONNREFUSED) {
		// A server may listen on the IPv6 loopback only; anything else
		// of that try (no ::1 in the container) is the refusal's.
		if c6, err6 := dialIn(ctx, ns, unix.AF_INET6, port); err6 == nil {
			return c6, nil
		}
	}
	return c, err
}

// netnsOf opens container id's network namespace. Its path is the
// engine's (the container's sandbox key), asked again when the one known
// names no namespace any more (the container was stopped, or started
// again since).
func (d *Docker) netnsOf(ctx context.Context, id string) (int, error) {
	if p, ok := d.netns.Load(id); ok {
		if fd, err := openNetns(p.(string)); err == nil {
			return fd, nil
		}
		d.netns.CompareAndDelete(id, p)
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	res, err := d.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return -1, fmt.Errorf("inspect container %s: %w", id, err)
	}
	c := res.Container
	if c.State == nil || !c.State.Running {
		d.netns.Delete(id)
		return -1, fmt.Errorf("container %s is not running", id)
	}
	if c.NetworkSettings == nil || c.NetworkSettings.SandboxKey == "" {
		return -1, fmt.Errorf("container %s has no network namespace of its own: %w", id, errors.ErrUnsupported)
	}
	fd, err := openNetns(c.NetworkSettings.SandboxKey)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		// The engine's path of a running container: bothy does not see
		// it, or may not open it.
		return -1, fmt.Errorf("%w (%w)", err, errors.ErrUnsupported)
	} else if err != nil {
		return -1, err
	}
	d.netns.Store(id, c.NetworkSettings.SandboxKey)
	return fd, nil
}

// openNetns opens the network namespace at path, refusing bothy's own (a
// container on the host's network): its loopback is the host's.
func openNetns(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	if kind, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err != nil || kind != unix.CLONE_NEWNET {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is not a network namespace (any more): %v", path, err)
	}
	var ns, own unix.Stat_t
	if err := unix.Fstat(fd, &ns); err != nil || unix.Stat("/proc/self/ns/net", &own) != nil || ns.Dev == own.Dev && ns.Ino == own.Ino {
		unix.Close(fd)
		return -1, fmt.Errorf("network namespace %s is not a container's own: %w", path, errors.ErrUnsupported)
	}
	return fd, nil
}

// dialIn connects to port on the loopback of family in the network
// namespace ns. Only the socket's making enters the namespace (a socket
// belongs to the namespace it was made in), on a thread of its own; the
// connect is an ordinary non-blocking one, waited for by the runtime's
// poller, so a server slow to accept holds no thread.
func dialIn(ctx context.Context, ns, family, port int) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, loopbackDialTimeout)
	defer cancel()
	fd, err := socketIn(ns, family)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, loopbackBuffer)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, loopbackBuffer)
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	if family == unix.AF_INET6 {
		sa = &unix.SockaddrInet6{Port: port, Addr: [16]byte{15: 1}}
	}
	f := os.NewFile(uintptr(fd), "loopback") // non-blocking: the poller's
	defer f.Close()                          // FileConn keeps a copy
	err = unix.Connect(fd, sa)
	if errors.Is(err, unix.EINPROGRESS) {
		err = awaitConnect(ctx, f)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to port %d: %w", port, err)
	}
	return net.FileConn(f)
}

// awaitConnect waits for f's connect to end, or ctx, and says how it ended.
func awaitConnect(ctx context.Context, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Now()) })
	defer stop()
	var result error
	werr := rc.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			result = err
		case v != 0:
			result = unix.Errno(v)
		default:
			if _, err := unix.Getpeername(int(fd)); errors.Is(err, unix.ENOTCONN) {
				return false // not yet: wait until it is writable
			}
		}
		return true
	})
	if werr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return werr
	}
	return result
}

// socketIn makes a non-blocking TCP socket of family in the network
// namespace ns. The thread that enters it is given back only once it is
// in bothy's own namespace again; otherwise it ends with its goroutine.
func socketIn(ns, family int) (int, error) {
	type made struct {
		fd  int
		err error
	}
	ch := make(chan made, 1)
	go func() {
		goruntime.LockOSThread()
		own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			goruntime.UnlockOSThread()
			ch <- made{-1, fmt.Errorf("open own network namespace: %w", err)}
			return
		}
		defer unix.Close(own)
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			goruntime.UnlockOSThread()
			if errors.Is(err, unix.EPERM) {
				err = fmt.Errorf("%w (%w)", err, errors.ErrUnsupported)
			}
			ch <- made{-1, fmt.Errorf("enter network namespace: %w", err)}
			return
		}
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if unix.Setns(own, unix.CLONE_NEWNET) == nil {
			goruntime.UnlockOSThread()
		}
		ch <- made{fd, err}
	}()
	m := <-ch
	if m.err != nil {
		return -1, m.err
	}
	return m.fd, nil
}
