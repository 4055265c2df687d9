package snapshot

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
)

// Quota bounds one owner's snapshots. A zero field is no bound.
type Quota struct {
	Snapshots int64 // snapshots kept
	Bytes     int64 // what they add to their base images, together
}

// QuotaFunc tells an owner's quota.
type QuotaFunc func(ctx context.Context, owner string) (Quota, error)

// insertWithin inserts sn (pending) if owner's quota holds one more snapshot
// adding bytes (known for an import, 0 for a checkpoint not taken yet).
func (s *Snapshots) insertWithin(ctx context.Context, sn *Snapshot, adding int64) error {
	s.quotaMu.Lock()
	defer s.quotaMu.Unlock()
	if s.cfg.Quotas != nil {
		q, err := s.cfg.Quotas(ctx, sn.Owner)
		if err != nil {
			return err
		}
		var n, bytes int64
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(size), 0) FROM snapshots WHERE owner = ?`, sn.Owner).
			Scan(&n, &bytes); err != nil {
			return fmt.Errorf("snapshot quota: %w", err)
		}
		if q.Snapshots > 0 && n+1 > q.Snapshots {
			return cerrdefs.ErrResourceExhausted.WithMessage(fmt.Sprintf(
				"quota exceeded: snapshots: %d kept, the key's quota is %d", n, q.Snapshots))
		}
		if q.Bytes > 0 && bytes+adding >= q.Bytes {
			return cerrdefs.ErrResourceExhausted.WithMessage(fmt.Sprintf(
				"quota exceeded: snapshot_bytes: %d in use, %d asked, the key's quota is %d", bytes, adding, q.Bytes))
		}
	}
	return s.insert(ctx, sn)
}
