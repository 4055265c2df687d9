package snapshot

import (
	"context"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/runtime"
)

// Reconcile removes the images of this instance that no snapshot owns and
// that are older than the orphan grace: a checkpoint the engine finished
// after bothy died (and forgot it), a diff's temporary capture, or the
// untagged image of a snapshot deleted while a child built on it, once the
// child is gone too. An image without this instance's labels is never
// touched.
func (s *Snapshots) Reconcile(ctx context.Context) error {
	imgs, err := s.eng.ImagesLabelled(ctx, runtime.LabelInstance+"="+s.cfg.Instance)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM snapshots`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		known[id] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	cutoff := time.Now().Add(-s.cfg.OrphanGrace)
	for _, img := range imgs {
		l := img.Labels
		if l[runtime.LabelKind] != runtime.KindSnapshot || l[runtime.LabelInstance] != s.cfg.Instance ||
			known[l[runtime.LabelID]] || img.Created.After(cutoff) {
			continue
		}
		refs := img.Tags
		if len(refs) == 0 || refs[0] == "<none>:<none>" {
			refs = []string{img.ID}
		}
		for _, ref := range refs {
			err := s.eng.ImageRemove(ctx, ref)
			switch {
			case err == nil:
				s.log.Info("removed an image no snapshot owns", "image", ref)
			case cerrdefs.IsConflict(err):
				// A child still builds on it; it goes with the child.
				s.log.Debug("an image no snapshot owns is still in use", "image", ref, "err", err)
			case !cerrdefs.IsNotFound(err):
				s.log.Warn("remove an orphaned snapshot image", "image", ref, "err", err)
			}
		}
	}
	return nil
}

// Run reconciles now and then in the background until Close.
func (s *Snapshots) Run(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.warmLoop(ctx)
	}()
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.cfg.ReconcileEvery)
		defer t.Stop()
		for {
			if err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("reconcile snapshot images", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Close stops Run and waits for it, and for the captured layers being
// loaded.
func (s *Snapshots) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.loadMu.Lock()
	s.loadsClosed = true
	s.loadMu.Unlock()
	s.loading.Wait()
}
