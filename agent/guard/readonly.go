package guard

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/bothy/bothy/agent/mountinfo"
	"golang.org/x/sys/unix"
)

// ReadOnly remounts read-only each of paths that is a mount point of its
// own (wire.PodFiles, in a pod), keeping its other flags, and checks that
// it took. A path that does
// not exist, or is no mount point (a file of the container's own, inside its
// disk limit), is left as it is. It takes CAP_SYS_ADMIN.
func ReadOnly(paths []string) error {
	points, err := mountinfo.Points()
	if err != nil {
		return err
	}
	for _, p := range paths {
		// The runtime mounts where a link in the image leads.
		target, err := filepath.EvalSymlinks(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		if !points[target] {
			// No mount of its own: it must then be on the container's
			// root, inside its limit, or read-only already.
			if err := onRootOrReadOnly(target); err != nil {
				return err
			}
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(target, &st); err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
		if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|mountFlags(st.Flags), ""); err != nil {
			return fmt.Errorf("remount %s read-only: %w", target, err)
		}
		if err := unix.Statfs(target, &st); err != nil || st.Flags&unix.ST_RDONLY == 0 {
			return fmt.Errorf("%s is still writable (%v)", target, err)
		}
	}
	return nil
}

// onRootOrReadOnly fails for a path that is neither on the filesystem of
// "/", nor on a tmpfs, nor on a read-only filesystem: a mount of the node's
// that mountinfo did not name as ReadOnly looked for it.
func onRootOrReadOnly(p string) error {
	var root, st unix.Stat_t
	if err := unix.Stat("/", &root); err != nil {
		return err
	}
	if err := unix.Stat(p, &st); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if st.Dev == root.Dev {
		return nil
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(p, &fs); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	// A tmpfs's pages are charged to the memory of whoever writes them.
	if fs.Flags&unix.ST_RDONLY == 0 && fs.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("%s is on a writable filesystem other than the container's root, and no mount of its own", p)
	}
	return nil
}

// mountFlags are the flags of a bind mount's remount that keep what statfs
// says of it: a remount sets them all anew.
func mountFlags(st int64) uintptr {
	var f uintptr
	for _, m := range []struct {
		st int64
		ms uintptr
	}{
		{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if st&m.st != 0 {
			f |= m.ms
		}
	}
	return f
}
