package supervisor

import (
	"context"
	"encoding/json"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
)

// Quota bounds what one key may hold at once. A zero field is no bound.
type Quota struct {
	Sandboxes     int64   `json:"sandboxes,omitempty"`      // sandboxes that exist, in any state
	Running       int64   `json:"running,omitempty"`        // sandboxes running or paused
	MemoryMB      int64   `json:"memory_mb,omitempty"`      // memory of the running and paused ones
	CPUs          float64 `json:"cpus,omitempty"`           // CPUs of the running and paused ones
	DiskMB        int64   `json:"disk_mb,omitempty"`        // disk_mb of every sandbox
	Snapshots     int64   `json:"snapshots,omitempty"`      // snapshots kept
	SnapshotBytes int64   `json:"snapshot_bytes,omitempty"` // what the snapshots add, in bytes
}

// With is q with the fields o sets put over it.
func (q Quota) With(o Quota) Quota {
	pick := func(a, b int64) int64 {
		if b != 0 {
			return b
		}
		return a
	}
	q.Sandboxes, q.Running, q.MemoryMB = pick(q.Sandboxes, o.Sandboxes), pick(q.Running, o.Running), pick(q.MemoryMB, o.MemoryMB)
	q.DiskMB, q.Snapshots, q.SnapshotBytes = pick(q.DiskMB, o.DiskMB), pick(q.Snapshots, o.Snapshots), pick(q.SnapshotBytes, o.SnapshotBytes)
	if o.CPUs != 0 {
		q.CPUs = o.CPUs
	}
	return q
}

func (q Quota) validate() error {
	if q.Sandboxes < 0 || q.Running < 0 || q.MemoryMB < 0 || q.CPUs < 0 || q.DiskMB < 0 || q.Snapshots < 0 || q.SnapshotBytes < 0 {
		return cerrdefs.ErrInvalidArgument.WithMessage("quota: no field may be negative")
	}
	return nil
}

// SetDefaultQuota sets the quota of every key that does not set its own
// fields (admin keys have none unless their own).
func (k *Keys) SetDefaultQuota(q Quota) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.defaults = q
	clear(k.cache)
}

// effective is the quota a key is held to: its own fields over the server's
// defaults, or its own alone for an admin key.
func (k *Keys) effective(key *Key) {
	k.mu.Lock()
	defaults := k.defaults
	k.mu.Unlock()
	if key.Admin {
		defaults = Quota{}
	}
	key.Quota = defaults.With(key.OwnQuota)
}

// SetQuota sets a key's own quota fields (zero fields follow the server's
// defaults).
func (k *Keys) SetQuota(ctx context.Context, id string, q Quota) (Key, error) {
	if err := q.validate(); err != nil {
		return Key{}, err
	}
	b, _ := json.Marshal(q)
	res, err := k.db.ExecContext(ctx, `UPDATE api_keys SET quota = ? WHERE id = ? AND revoked_at IS NULL`, string(b), id)
	k.mu.Lock()
	clear(k.cache)
	k.mu.Unlock()
	if err != nil {
		return Key{}, fmt.Errorf("set quota: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Key{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("key %s not found", id))
	}
	return k.Get(ctx, id)
}
