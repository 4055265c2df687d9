// Package snapshot checkpoints sandboxes' filesystems as images and keeps the
// record of them: id, name, labels, owner, source sandbox, parent snapshot,
// base image, size and state. It does not import the orchestrator: the server
// hands it the container to capture, and restores by asking the orchestrator
// for a sandbox on the snapshot's image.
package snapshot

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/db"
	"github.com/bothy/bothy/internal/errclass"
	"github.com/bothy/bothy/runtime"
)

// Engine is what snapshots need of a container engine.
type Engine interface {
	Commit(ctx context.Context, containerID, ref string, labels map[string]string) (string, error)
	ImageInspect(ctx context.Context, ref string) (runtime.Image, error)
	ImageRemove(ctx context.Context, ref string) error
	// ImagesLabelled lists the images that carry a label, untagged ones too.
	ImagesLabelled(ctx context.Context, label string) ([]runtime.Image, error)
}

// Config is the snapshot store's part of bothy's configuration.
type Config struct {
	// Instance labels the images this bothy makes, so that reconcile
	// touches no other bothy's.
	Instance string
	// Scratch is where archives are spooled (sandboxes never see it).
	Scratch string
	// OrphanGrace is how old an image of this instance that no snapshot owns
	// must be before reconcile removes it (default 2 minutes).
	OrphanGrace time.Duration
	// ReconcileEvery is how often Run reconciles (default 30 s).
	ReconcileEvery time.Duration
	// Quotas, when set, tells each owner's snapshot quota.
	Quotas QuotaFunc
	// Publish, when set, pushes a new snapshot's image where other hosts
	// can pull it (a registry); a snapshot is ready once it is published.
	Publish func(ctx context.Context, ref string) error
	// Unpublish, when set, deletes a snapshot's published copy as the
	// snapshot is deleted.
	Unpublish func(ctx context.Context, ref string) error
}

// States of a snapshot: pending while it is captured, ready once it is whole.
const (
	StatePending = "pending"
	StateReady   = "ready"
)

// Snapshot is one checkpoint of a sandbox's filesystem.
type Snapshot struct {
	ID        string
	Name      string
	Owner     string
	SandboxID string
	// Parent is the snapshot the sandbox was restored from, if any.
	Parent string
	// BaseImage is the image the chain of snapshots started from.
	BaseImage string
	// Image is the engine image that holds the snapshot.
	Image     string
	Labels    map[string]string
	Size      int64
	State     string
	CreatedAt time.Time
}

// Source is the sandbox a checkpoint captures.
type Source struct {
	SandboxID   string
	ContainerID string
	// Image is the image the sandbox runs now: a base image or a snapshot's.
	Image string
	// Capture, when set, takes the checkpoint from inside (the sandbox's
	// agent) instead of by the engine's commit; MaxBytes bounds the layer it
	// streams.
	Capture  Capture
	MaxBytes int64
}

var migrations = []string{`CREATE TABLE snapshots (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	id         TEXT NOT NULL UNIQUE,
	name       TEXT NOT NULL,
	owner      TEXT NOT NULL,
	sandbox_id TEXT NOT NULL,
	parent     TEXT NOT NULL DEFAULT '',
	base_image TEXT NOT NULL,
	image      TEXT NOT NULL,
	labels     TEXT NOT NULL DEFAULT '{}',
	size       INTEGER NOT NULL DEFAULT 0,
	state      TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX snapshots_owner ON snapshots (owner, seq);`}

// Snapshots takes and keeps snapshots.
type Snapshots struct {
	cfg     Config
	db      *sql.DB
	eng     Engine
	arch    Archiver
	log     *slog.Logger
	scratch string // where archives are spooled (sandboxes never see it)

	cancel context.CancelFunc
	wg     sync.WaitGroup

	quotaMu sync.Mutex // a quota check and the insert it admits
	// warmQ holds snapshot images whose layers are to be read ahead of a
	// diff.
	warmQ chan warmRequest
	// loads are the captured layers being loaded into the engine, by the
	// image they make; loadSlots bounds them, loading counts them.
	loadMu    sync.Mutex
	loads     map[string]*layerLoad
	loadSlots chan struct{}
	unloaded  chan struct{} // a place for each layer captured and not yet loaded
	// loadsClosed: Close ran; no load starts (under loadMu).
	loadsClosed bool
	loading     sync.WaitGroup
	// reading is held while image layers are read, one image at a time.
	reading chan struct{}
	// spooling holds a place for each export or import under way: each
	// spools a whole archive to the scratch directory, so they are few at
	// a time (the rest wait their turn).
	spooling chan struct{}
}

// spoolSlots is how many exports and imports spool at once.
const spoolSlots = 2

// spool waits for a place among the archives being spooled, and returns
// the function that gives it back.
func (s *Snapshots) spool(ctx context.Context) (func(), error) {
	select {
	case s.spooling <- struct{}{}:
		return func() { <-s.spooling }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// New migrates the snapshot table and settles snapshots a crash left pending:
// whole ones (their image exists) become ready, the rest are forgotten.
func New(ctx context.Context, cfg Config, d *sql.DB, eng interface {
	Engine
	Archiver
}, log *slog.Logger) (*Snapshots, error) {
	if cfg.Instance == "" || cfg.Scratch == "" {
		return nil, errors.New("snapshot: Instance and Scratch are required")
	}
	if cfg.OrphanGrace == 0 {
		cfg.OrphanGrace = 2 * time.Minute
	}
	if cfg.ReconcileEvery == 0 {
		cfg.ReconcileEvery = 30 * time.Second
	}
	if err := db.Migrate(ctx, d, "snapshot", migrations); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Scratch, 0o700); err != nil {
		return nil, err
	}
	s := &Snapshots{cfg: cfg, db: d, eng: eng, arch: eng, log: log.With("component", "snapshot"), scratch: cfg.Scratch,
		warmQ: make(chan warmRequest, 16), reading: make(chan struct{}, 1), spooling: make(chan struct{}, spoolSlots),
		loads: map[string]*layerLoad{}, loadSlots: make(chan struct{}, loadSlots), unloaded: make(chan struct{}, unloadedLayers)}
	pending, err := s.query(ctx, `WHERE state = ?`, StatePending)
	if err != nil {
		return nil, err
	}
	for _, sn := range pending {
		if _, err := eng.ImageInspect(ctx, sn.Image); err == nil {
			_, err = d.ExecContext(ctx, `UPDATE snapshots SET state = ? WHERE id = ?`, StateReady, sn.ID)
			if err != nil {
				return nil, err
			}
			continue
		}
		if _, err := d.ExecContext(ctx, `DELETE FROM snapshots WHERE id = ?`, sn.ID); err != nil {
			return nil, err
		}
		s.log.Info("forgot a snapshot that a crash left incomplete", "snapshot_id", sn.ID)
	}
	if err := s.resumeLoads(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ImageRef is the engine image of a snapshot.
func ImageRef(id string) string { return "bothy/snapshot:" + id }

// Create checkpoints src for owner. The container is paused while its
// filesystem is captured (and thawed by the engine whatever happens); the
// record is pending until the image is whole.
func (s *Snapshots) Create(ctx context.Context, owner string, src Source, name string, labels map[string]string) (Snapshot, error) {
	if len(name) > 200 || strings.ContainsRune(name, 0) {
		return Snapshot{}, cerrdefs.ErrInvalidArgument.WithMessage("name: at most 200 characters")
	}
	for k, v := range labels {
		if k == "" || len(k) > 63 || len(v) > 256 {
			return Snapshot{}, cerrdefs.ErrInvalidArgument.WithMessage("labels: keys 1 to 63 characters, values at most 256")
		}
	}
	sn := Snapshot{
		ID: newID(), Name: name, Owner: owner, SandboxID: src.SandboxID, BaseImage: src.Image,
		Labels: labels, State: StatePending, CreatedAt: time.Now().UTC(),
	}
	sn.Image = ImageRef(sn.ID)
	if strings.HasPrefix(src.Image, "bothy/snapshot:") {
		parentID := strings.TrimPrefix(src.Image, "bothy/snapshot:")
		sn.Parent = parentID
		if p, err := s.get(ctx, parentID); err == nil {
			sn.BaseImage = p.BaseImage
		}
	}
	if sn.Name == "" {
		sn.Name = sn.ID
	}
	if err := s.insertWithin(ctx, &sn, 0); err != nil {
		return Snapshot{}, err
	}
	imageLabels := map[string]string{
		runtime.LabelKind: runtime.KindSnapshot, runtime.LabelID: sn.ID, runtime.LabelOwner: owner,
		runtime.LabelInstance: s.cfg.Instance,
	}
	// A running sandbox's captured layer is loaded into the engine after
	// the snapshot answers (startLoad), unless it is published first.
	var layer *capturedLayer
	err := s.awaitImage(ctx, src.Image)
	switch {
	case err != nil:
	case src.Capture != nil:
		// The capture stops with the call (a stop or delete of the
		// sandbox ends it); the load of a whole layer does not.
		var l capturedLayer
		if err = s.takeUnloaded(ctx); err != nil {
			break
		}
		if l, err = s.capture(ctx, src, sn.ID, imageLabels); err == nil {
			layer = &l
		}
		if err == nil && s.cfg.Publish != nil {
			// Ready once published: the image is loaded first.
			err = s.loadLayer(context.WithoutCancel(ctx), sn.ID, sn.Image, l)
			layer = nil
		}
		if layer == nil {
			<-s.unloaded
		}
	default:
		_, err = s.eng.Commit(context.WithoutCancel(ctx), src.ContainerID, sn.Image, imageLabels)
	}
	if err != nil {
		_, _ = s.db.ExecContext(context.WithoutCancel(ctx), `DELETE FROM snapshots WHERE id = ?`, sn.ID)
		return Snapshot{}, err
	}
	if s.cfg.Publish != nil {
		if err := s.cfg.Publish(ctx, sn.Image); err != nil {
			_, _ = s.db.ExecContext(context.WithoutCancel(ctx), `DELETE FROM snapshots WHERE id = ?`, sn.ID)
			_ = s.eng.ImageRemove(context.WithoutCancel(ctx), sn.Image)
			return Snapshot{}, err
		}
	}
	if layer != nil {
		sn.Size = layer.Size // what this snapshot adds
		s.startLoad(sn.ID, sn.Image, *layer, func() { <-s.unloaded })
	} else if img, err := s.eng.ImageInspect(ctx, sn.Image); err == nil {
		sn.Size = img.Size
		if base, err := s.eng.ImageInspect(ctx, src.Image); err == nil && img.Size >= base.Size {
			sn.Size = img.Size - base.Size // what this snapshot adds
		}
	}
	sn.State = StateReady
	// The image is whole (or its layer is, and loads): a caller gone now
	// does not undo it.
	res, err := s.db.ExecContext(context.WithoutCancel(ctx), `UPDATE snapshots SET state = ?, size = ? WHERE id = ?`, sn.State, sn.Size, sn.ID)
	if err != nil {
		return Snapshot{}, err
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		// Its layer's load failed already, and forgot it.
		if err := s.awaitImage(ctx, sn.Image); err != nil {
			return Snapshot{}, err
		}
		return Snapshot{}, fmt.Errorf("snapshot %s was forgotten as it was taken", sn.ID)
	}
	how := "commit"
	if src.Capture != nil {
		how = "agent"
	}
	s.log.Info("snapshot taken", "snapshot_id", sn.ID, "sandbox_id", src.SandboxID, "bytes", sn.Size, "how", how)
	if layer == nil {
		s.warm(sn.Image)
	}
	return sn, nil
}

// Checkpoint is Create as the orchestrator asks for it
// (orchestrator.Checkpoints): the new snapshot's ID.
func (s *Snapshots) Checkpoint(ctx context.Context, owner, id, container, image, name string, labels map[string]string,
	capture func(ctx context.Context, imagePaths []string, start func(size int64) (io.Writer, error)) error, maxBytes int64) (string, error) {
	sn, err := s.Create(ctx, owner, Source{SandboxID: id, ContainerID: container, Image: image, Capture: capture, MaxBytes: maxBytes}, name, labels)
	return sn.ID, err
}

// SnapshotLabels are the labels of owner's ready snapshot id.
func (s *Snapshots) SnapshotLabels(ctx context.Context, owner, id string) (map[string]string, error) {
	sn, err := s.Get(ctx, owner, id)
	return sn.Labels, err
}

// SnapshotImage is the image of owner's ready snapshot id, once the
// engine has it.
func (s *Snapshots) SnapshotImage(ctx context.Context, owner, id string) (string, error) {
	sn, err := s.loaded(ctx, owner, id)
	return sn.Image, err
}

// loaded is Get once the engine has the snapshot's image (its captured
// layer may still be loading).
func (s *Snapshots) loaded(ctx context.Context, owner, id string) (Snapshot, error) {
	sn, err := s.Get(ctx, owner, id)
	if err == nil {
		err = s.awaitImage(ctx, sn.Image)
	}
	return sn, err
}

// Get returns owner's ready snapshot id.
func (s *Snapshots) Get(ctx context.Context, owner, id string) (Snapshot, error) {
	sn, err := s.get(ctx, id)
	if err != nil || sn.Owner != owner || sn.State != StateReady {
		return Snapshot{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("snapshot %s not found", id))
	}
	return sn, nil
}

// Filter narrows List.
type Filter struct {
	SandboxID string
	Labels    map[string]string
}

// List returns owner's ready snapshots, oldest first.
func (s *Snapshots) List(ctx context.Context, owner string, f Filter) ([]Snapshot, error) {
	where := `WHERE owner = ? AND state = ?`
	args := []any{owner, StateReady}
	if f.SandboxID != "" {
		where += ` AND sandbox_id = ?`
		args = append(args, f.SandboxID)
	}
	for k, v := range f.Labels {
		where += ` AND EXISTS (SELECT 1 FROM json_each(snapshots.labels) WHERE json_each.key = ? AND json_each.value = ?)`
		args = append(args, k, v)
	}
	return s.query(ctx, where, args...)
}

// Delete removes owner's snapshot, its image and the image's published
// copy. The engine refuses (a conflict) while a sandbox runs on it or
// another snapshot is built on it.
func (s *Snapshots) Delete(ctx context.Context, owner, id string) error {
	sn, err := s.loaded(ctx, owner, id)
	if err == nil {
		err = s.awaitLoadsOnto(ctx, sn.Image)
	}
	if err != nil {
		return err
	}
	if err := s.eng.ImageRemove(ctx, sn.Image); err != nil && !cerrdefs.IsNotFound(err) {
		if cerrdefs.IsConflict(err) {
			// The engine's own words name its image and container IDs,
			// which mean nothing to the caller.
			return errclass.New(fmt.Sprintf("snapshot %s is in use by a sandbox made or restored from it (or by a snapshot of one): delete those first", id), cerrdefs.ErrConflict)
		}
		return err
	}
	// The engine's copy first: while a sandbox uses it, the snapshot
	// stays whole. A copy the registry could not delete keeps the record,
	// and the engine fetches the image again where it is used; a delete
	// asked again finishes the job.
	if s.cfg.Unpublish != nil {
		if err := s.cfg.Unpublish(ctx, sn.Image); err != nil {
			return errclass.New(fmt.Sprintf("snapshot %s: %v", id, err), cerrdefs.ErrUnavailable)
		}
	}
	_, err = s.db.ExecContext(ctx, `DELETE FROM snapshots WHERE id = ?`, id)
	return err
}

func (s *Snapshots) get(ctx context.Context, id string) (Snapshot, error) {
	list, err := s.query(ctx, `WHERE id = ?`, id)
	if err != nil {
		return Snapshot{}, err
	}
	if len(list) == 0 {
		return Snapshot{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("snapshot %s not found", id))
	}
	return list[0], nil
}

func (s *Snapshots) insert(ctx context.Context, sn *Snapshot) error {
	labels, _ := json.Marshal(orEmpty(sn.Labels))
	_, err := s.db.ExecContext(ctx, `INSERT INTO snapshots (id, name, owner, sandbox_id, parent, base_image, image, labels, size, state, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sn.ID, sn.Name, sn.Owner, sn.SandboxID, sn.Parent, sn.BaseImage, sn.Image, string(labels), sn.Size, sn.State, sn.CreatedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("insert snapshot: %w", err)
	}
	return nil
}

func (s *Snapshots) query(ctx context.Context, where string, args ...any) ([]Snapshot, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, owner, sandbox_id, parent, base_image, image, labels, size, state, created_at FROM snapshots `+where+` ORDER BY seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	defer rows.Close()
	var out []Snapshot
	for rows.Next() {
		var sn Snapshot
		var labels string
		var created int64
		if err := rows.Scan(&sn.ID, &sn.Name, &sn.Owner, &sn.SandboxID, &sn.Parent, &sn.BaseImage, &sn.Image, &labels, &sn.Size, &sn.State, &created); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(labels), &sn.Labels); err != nil {
			return nil, errors.New("snapshot labels are corrupt")
		}
		sn.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, sn)
	}
	return out, rows.Err()
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func newID() string {
	b := make([]byte, 8)
	_, _ = io.ReadFull(rand.Reader, b)
	return "snap-" + hex.EncodeToString(b)
}

// Totals counts the snapshots of every owner that are ready, and the bytes
// they add to their base images.
func (s *Snapshots) Totals(ctx context.Context) (count int, bytes int64, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(size), 0) FROM snapshots WHERE state = ?`, StateReady).Scan(&count, &bytes)
	return count, bytes, err
}
