// Package docker is the one adapter over the Docker Engine API. It translates the
// neutral types of package runtime to and from the moby client; it makes no
// lifecycle decisions. Errors keep the client's errdefs classes, so callers test
// them with errdefs.IsNotFound and friends.
package docker

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"

	"github.com/bothy/bothy/runtime"
)

// controlTimeout bounds one control call to the engine (create, start, inspect...).
// Streams (image import, pull) get none.
const controlTimeout = 30 * time.Second

// Docker drives one Docker engine.
type Docker struct {
	cli *client.Client
	log *slog.Logger
	// shares are what each container it starts may take of the kernel's
	// shared limits (shares.go).
	shares Shares
	// unseen warns, once, that bothy cannot see the engine's processes
	// and so cannot give containers their shares.
	unseen sync.Once
	// deriving holds, for each volume-free copy of an image, the lock of
	// its making (volumes.go).
	volumesMu sync.Mutex
	deriving  map[string]*sync.Mutex
	// registry is the host of the registry whose credentials auth holds
	// (registry.go).
	registry, auth string
	// netns holds the path of each running container's network
	// namespace that a dial of its loopback found (loopback.go).
	netns sync.Map
}

// New connects to the engine named by DOCKER_HOST (or the local socket) and
// negotiates the API version.
func New(ctx context.Context, log *slog.Logger) (*Docker, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	d := &Docker{cli: cli, log: log, shares: DefaultShares(), deriving: map[string]*sync.Mutex{}}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker engine does not answer: %w", err)
	}
	return d, nil
}

// SetShares sets what each container started from now on may take of the
// kernel's shared limits.
func (d *Docker) SetShares(s Shares) { d.shares = s }

// Close releases the client.
func (d *Docker) Close() error { return d.cli.Close() }

// Info reports the engine's version and the isolation features it has on.
func (d *Docker) Info(ctx context.Context) (runtime.EngineInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	res, err := d.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return runtime.EngineInfo{}, fmt.Errorf("docker info: %w", err)
	}
	info := runtime.EngineInfo{
		Version:    res.Info.ServerVersion,
		APIVersion: d.cli.ClientVersion(),
		CgroupV2:   res.Info.CgroupVersion == "2",
	}
	for _, opt := range res.Info.SecurityOptions {
		if strings.Contains(opt, "name=userns") {
			info.UsernsRemap = true
		}
	}
	info.StorageDriver = res.Info.Driver
	switch res.Info.Driver {
	case "btrfs":
		info.DiskLimits = "btrfs quota"
	case "zfs":
		info.DiskLimits = "zfs quota"
	case "overlay2":
		for _, kv := range res.Info.DriverStatus {
			if kv[0] == "Backing Filesystem" && kv[1] == "xfs" {
				info.DiskLimits = "xfs project quota"
			}
		}
	}
	// A remapping engine keeps its data under a directory named for the
	// remapped root: <data-root>/<uid>.<gid>.
	if info.UsernsRemap {
		uid, _, ok := strings.Cut(filepath.Base(res.Info.DockerRootDir), ".")
		n, err := strconv.Atoi(uid)
		if !ok || err != nil {
			return runtime.EngineInfo{}, fmt.Errorf("docker info: cannot tell the remapped root uid from %q", res.Info.DockerRootDir)
		}
		info.RootUID = n
	}
	return info, nil
}
