package orchestrator

import (
	"context"
	"time"
)

// diskProbeTimeout bounds a disk probe: it answers an inspection, which must
// not hang on a busy sandbox.
const diskProbeTimeout = 2 * time.Second

// DiskFull reports whether sb, running with a disk limit, has used that limit
// up (a small write in it fails for want of space). It neither wakes nor
// touches a sandbox that is not running; for one, or one without a limit, it
// reports false.
func (o *Orchestrator) DiskFull(ctx context.Context, sb Sandbox) bool {
	if sb.State != StateRunning || sb.Spec.DiskMB == 0 {
		return false
	}
	l := o.lookupLive(sb.ID)
	if l == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, diskProbeTimeout)
	defer cancel()
	conn, err := l.ep.Conn(ctx)
	if err != nil {
		return false
	}
	st, err := conn.Disk(ctx)
	return err == nil && st.Full
}
