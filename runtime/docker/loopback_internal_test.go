package docker

import (
	"errors"
	"testing"
)

// bothy's own network namespace is never entered for a container (its
// loopback is the host's), nor anything that is not a network namespace.
func TestOpenNetnsRefusesBothysOwn(t *testing.T) {
	if fd, err := openNetns("/proc/self/ns/net"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("bothy's own: %d, %v; want ErrUnsupported", fd, err)
	}
	// A path that names no network namespace: a namespace that is gone
	// leaves the engine's file behind, unmounted.
	for _, p := range []string{"/nonexistent/netns", "/proc/self/ns/uts", "/etc/hostname"} {
		if fd, err := openNetns(p); err == nil {
			t.Errorf("%s: opened (%d)", p, fd)
		}
	}
}
