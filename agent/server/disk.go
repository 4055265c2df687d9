package server

import (
	"errors"
	"os"
	"syscall"

	"github.com/bothy/bothy/agent/wire"
)

// probeSize is what the disk probe writes: a few blocks, which a filesystem
// whose quota is used up refuses at once.
const probeSize = 16 << 10

// probeDisk writes and removes a small file at the root of the container's
// own filesystem: a write refused for want of space (EDQUOT, or ENOSPC) means
// the disk limit is used up.
func probeDisk() wire.DiskState {
	f, err := os.CreateTemp("/", ".bothy-disk-probe-")
	if err == nil {
		defer os.Remove(f.Name())
		_, err = f.Write(make([]byte, probeSize))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	switch {
	case err == nil:
		return wire.DiskState{}
	case errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.ENOSPC):
		return wire.DiskState{Full: true}
	}
	return wire.DiskState{Error: err.Error()}
}
