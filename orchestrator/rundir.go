package orchestrator

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// What a container mounts from the host (its socket directory, the agent
// binary) shows in its /proc/self/mountinfo as the path within the source's
// filesystem. So that no container learns where bothy keeps its data, the
// run directory is a tmpfs of bothy's own: its paths there start at the
// tmpfs's root ("/sb-...", "/.agent/..."), and the agent binaries are copied
// into it from their lasting home under the data directory.

// hideRunDir mounts a tmpfs on dir unless one is there already. It leaves dir
// as it is (and says why) when dir holds entries already, which containers
// started by an earlier bothy still use, or when the mount is not
// permitted.
func hideRunDir(dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		return false, err
	}
	if st.Dev != parent.Dev {
		return true, nil // mounted by an earlier run of bothy
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	if len(entries) > 0 {
		return false, errors.New("it holds the sockets of sandboxes an earlier bothyd started; restart bothyd with none running to hide it")
	}
	if err := unix.Mount("bothy-run", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0711,size=256m"); err != nil {
		return false, fmt.Errorf("mount a tmpfs on it: %w", err)
	}
	return true, nil
}

// copyAgents copies every agent binary of from (the lasting copies) into to,
// so that a container started with any of them finds it.
func copyAgents(from, to string) error {
	if err := os.MkdirAll(to, 0o711); err != nil {
		return err
	}
	if err := os.Chmod(to, 0o711); err != nil {
		return err
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		dst := filepath.Join(to, e.Name())
		if !e.Type().IsRegular() || filepath.Ext(e.Name()) == ".tmp" {
			continue
		}
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := copyFile(filepath.Join(from, e.Name()), dst); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}
