package orchestrator

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
)

// Quota bounds what one owner's sandboxes may hold at once. A zero field is
// no bound.
type Quota struct {
	Sandboxes int64   // sandboxes that exist, in any state
	Running   int64   // sandboxes running or paused
	MemoryMB  int64   // memory of the running and paused ones
	CPUs      float64 // CPUs of the running and paused ones
	DiskMB    int64   // disk_mb of every sandbox
}

// QuotaFunc tells an owner's quota.
type QuotaFunc func(ctx context.Context, owner string) (Quota, error)

// usage is what an owner's sandboxes hold now.
type usage struct {
	sandboxes, running, memoryMB, diskMB int64
	cpus                                 float64
}

// activeStates hold their memory and CPUs.
const activeStates = `'creating', 'running', 'paused', 'starting'`

func (s *store) usage(ctx context.Context, owner string) (usage, error) {
	var u usage
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*),
		COALESCE(SUM(CASE WHEN state IN (`+activeStates+`) THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN state IN (`+activeStates+`) THEN json_extract(spec, '$.memory_mb') ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN state IN (`+activeStates+`) THEN json_extract(spec, '$.cpus') ELSE 0 END), 0),
		COALESCE(SUM(json_extract(spec, '$.disk_mb')), 0)
		FROM sandboxes WHERE owner = ? AND state NOT IN ('deleting', 'deleted')`, owner).
		Scan(&u.sandboxes, &u.running, &u.memoryMB, &u.cpus, &u.diskMB)
	if err != nil {
		return usage{}, fmt.Errorf("quota usage: %w", err)
	}
	return u, nil
}

// admit checks that owner may hold one more sandbox of spec: a new one
// (create) or one more running (start). The caller holds the owner's quota
// lock until the sandbox's row says what it holds.
func (o *Orchestrator) admit(ctx context.Context, owner string, spec Spec, create bool) error {
	if o.cfg.Quotas == nil {
		return nil
	}
	q, err := o.cfg.Quotas(ctx, owner)
	if err != nil || q == (Quota{}) {
		return err
	}
	u, err := o.store.usage(ctx, owner)
	if err != nil {
		return err
	}
	over := func(name string, used, want, limit float64) error {
		if limit > 0 && used+want > limit {
			return cerrdefs.ErrResourceExhausted.WithMessage(fmt.Sprintf(
				"quota exceeded: %s: %g in use, %g asked, the key's quota is %g", name, used, want, limit))
		}
		return nil
	}
	checks := []error{
		over("running sandboxes", float64(u.running), 1, float64(q.Running)),
		over("memory_mb of running sandboxes", float64(u.memoryMB), float64(spec.MemoryMB), float64(q.MemoryMB)),
		over("cpus of running sandboxes", u.cpus, spec.CPUs, q.CPUs),
	}
	if create {
		checks = append(checks,
			over("sandboxes", float64(u.sandboxes), 1, float64(q.Sandboxes)),
			over("disk_mb", float64(u.diskMB), float64(spec.DiskMB), float64(q.DiskMB)))
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	return nil
}
