package orchestrator

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/db"
)

// migrations of the sandboxes table. Other components' rows name a sandbox's
// (e2b_tokens, ON DELETE CASCADE): a step that rebuilds this table would
// delete theirs with its DROP, unless foreign keys are off, which SQLite
// allows only outside a transaction (and so outside db.Migrate).
var migrations = []string{
	`CREATE TABLE sandboxes (
		seq          INTEGER PRIMARY KEY AUTOINCREMENT,
		id           TEXT NOT NULL UNIQUE,
		owner        TEXT NOT NULL,
		state        TEXT NOT NULL,
		image        TEXT NOT NULL,
		container_id TEXT NOT NULL DEFAULT '',
		token        TEXT NOT NULL,
		spec         TEXT NOT NULL,
		labels       TEXT NOT NULL DEFAULT '{}',
		error        TEXT NOT NULL DEFAULT '',
		created_at   INTEGER NOT NULL,
		updated_at   INTEGER NOT NULL,
		last_active  INTEGER NOT NULL
	);
	CREATE INDEX sandboxes_owner ON sandboxes (owner, seq);
	CREATE TABLE idempotency (
		owner      TEXT NOT NULL,
		key        TEXT NOT NULL,
		sandbox_id TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (owner, key)
	);`,
}

// store keeps sandbox rows in SQLite. Rows read by ID are also kept in
// memory, written through: every write to the table goes through this
// store, and a data-plane call reads its sandbox on each request.
type store struct {
	db *sql.DB

	mu   sync.Mutex
	rows map[string]cachedRow
}

// cachedRow is a row as stored: its maps are decoded afresh for every
// reader, so that no two share them.
type cachedRow struct {
	sb           Sandbox // without Spec and Labels
	spec, labels string
}

func (s *store) cache(sb *Sandbox, spec, labels string) {
	c := *sb
	c.Spec, c.Labels, c.AwakeBy, c.Woken = Spec{}, nil, "", false
	// As a read from the database would have them.
	c.CreatedAt, c.UpdatedAt, c.LastActiveAt = time.Unix(0, c.CreatedAt.UnixNano()), time.Unix(0, c.UpdatedAt.UnixNano()), time.Unix(0, c.LastActiveAt.UnixNano())
	s.mu.Lock()
	s.rows[sb.ID] = cachedRow{sb: c, spec: spec, labels: labels}
	s.mu.Unlock()
}

func openStore(ctx context.Context, d *sql.DB) (*store, error) {
	if err := db.Migrate(ctx, d, "orchestrator", migrations); err != nil {
		return nil, err
	}
	return &store{db: d, rows: map[string]cachedRow{}}, nil
}

const sandboxColumns = `seq, id, owner, state, image, container_id, token, spec, labels, error, created_at, updated_at, last_active`

func (s *store) insert(ctx context.Context, sb *Sandbox) error {
	spec, labels, err := encodeRow(sb)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO sandboxes (id, owner, state, image, container_id, token, spec, labels, error, created_at, updated_at, last_active)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sb.ID, sb.Owner, sb.State, sb.Image, sb.ContainerID, sb.token, spec, labels, sb.Error,
		sb.CreatedAt.UnixNano(), sb.UpdatedAt.UnixNano(), sb.LastActiveAt.UnixNano())
	if err != nil {
		return fmt.Errorf("insert sandbox %s: %w", sb.ID, err)
	}
	sb.seq, _ = res.LastInsertId()
	s.cache(sb, spec, labels)
	return nil
}

// update writes every mutable column of sb.
func (s *store) update(ctx context.Context, sb *Sandbox) error {
	spec, labels, err := encodeRow(sb)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `UPDATE sandboxes SET state = ?, image = ?, container_id = ?, spec = ?, labels = ?, error = ?, updated_at = ?, last_active = ? WHERE id = ?`,
		sb.State, sb.Image, sb.ContainerID, spec, labels, sb.Error, sb.UpdatedAt.UnixNano(), sb.LastActiveAt.UnixNano(), sb.ID)
	if err != nil {
		return fmt.Errorf("update sandbox %s: %w", sb.ID, err)
	}
	s.mu.Lock()
	if c, ok := s.rows[sb.ID]; ok {
		c.sb.State, c.sb.Image, c.sb.ContainerID, c.sb.Error = sb.State, sb.Image, sb.ContainerID, sb.Error
		c.sb.UpdatedAt, c.sb.LastActiveAt = time.Unix(0, sb.UpdatedAt.UnixNano()), time.Unix(0, sb.LastActiveAt.UnixNano())
		c.spec, c.labels = spec, labels
		s.rows[sb.ID] = c
	}
	s.mu.Unlock()
	return nil
}

func (s *store) delete(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM sandboxes WHERE id = ?`, id)
	// Forgotten whatever the answer: the next read asks the database.
	s.mu.Lock()
	delete(s.rows, id)
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("delete sandbox %s: %w", id, err)
	}
	return nil
}

func (s *store) get(ctx context.Context, id string) (Sandbox, error) {
	s.mu.Lock()
	c, ok := s.rows[id]
	s.mu.Unlock()
	if ok {
		sb := c.sb
		return sb, decodeRow(&sb, c.spec, c.labels)
	}
	row := s.db.QueryRowContext(ctx, `SELECT `+sandboxColumns+` FROM sandboxes WHERE id = ?`, id)
	var spec, labels string
	sb, err := scanRow(row, &spec, &labels)
	if errors.Is(err, sql.ErrNoRows) {
		return Sandbox{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("sandbox %s not found", id))
	}
	if err != nil {
		return Sandbox{}, err
	}
	s.cache(&sb, spec, labels)
	return sb, decodeRow(&sb, spec, labels)
}

// ListFilter narrows a list.
type ListFilter struct {
	Labels map[string]string
	State  State
	// After is the cursor: list sandboxes created after the one it names.
	After int64
	Limit int
}

// list returns up to f.Limit of owner's sandboxes in creation order, and the
// cursor of the next page (0 when there is none).
func (s *store) list(ctx context.Context, owner string, f ListFilter) ([]Sandbox, int64, error) {
	q := strings.Builder{}
	q.WriteString(`SELECT ` + sandboxColumns + ` FROM sandboxes WHERE owner = ? AND seq > ?`)
	args := []any{owner, f.After}
	if f.State != "" {
		q.WriteString(` AND state = ?`)
		args = append(args, f.State)
	}
	for k, v := range f.Labels {
		q.WriteString(` AND EXISTS (SELECT 1 FROM json_each(sandboxes.labels) WHERE json_each.key = ? AND json_each.value = ?)`)
		args = append(args, k, v)
	}
	q.WriteString(` ORDER BY seq LIMIT ?`)
	args = append(args, f.Limit+1)
	out, err := s.query(ctx, q.String(), args...)
	if err != nil {
		return nil, 0, err
	}
	var next int64
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = out[len(out)-1].seq
	}
	return out, next, nil
}

// all returns every sandbox, for reconcile and the reaper.
func (s *store) all(ctx context.Context) ([]Sandbox, error) {
	return s.query(ctx, `SELECT `+sandboxColumns+` FROM sandboxes ORDER BY seq`)
}

func (s *store) query(ctx context.Context, q string, args ...any) ([]Sandbox, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	defer rows.Close()
	var out []Sandbox
	for rows.Next() {
		sb, err := scanSandbox(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, sb)
	}
	return out, rows.Err()
}

func (s *store) idempotent(ctx context.Context, owner, key string) (string, bool, error) {
	var id string
	err := s.db.QueryRowContext(ctx, `SELECT sandbox_id FROM idempotency WHERE owner = ? AND key = ?`, owner, key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("idempotency key: %w", err)
	}
	return id, true, nil
}

func (s *store) remember(ctx context.Context, owner, key, id string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO idempotency (owner, key, sandbox_id, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (owner, key) DO UPDATE SET sandbox_id = excluded.sandbox_id, created_at = excluded.created_at`,
		owner, key, id, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("idempotency key: %w", err)
	}
	return nil
}

type scanner interface{ Scan(...any) error }

func scanSandbox(r scanner) (Sandbox, error) {
	var spec, labels string
	sb, err := scanRow(r, &spec, &labels)
	if err != nil {
		return Sandbox{}, err
	}
	return sb, decodeRow(&sb, spec, labels)
}

// scanRow reads a row's columns, its spec and labels still encoded.
func scanRow(r scanner, spec, labels *string) (Sandbox, error) {
	var sb Sandbox
	var created, updated, active int64
	if err := r.Scan(&sb.seq, &sb.ID, &sb.Owner, &sb.State, &sb.Image, &sb.ContainerID, &sb.token,
		spec, labels, &sb.Error, &created, &updated, &active); err != nil {
		return Sandbox{}, err
	}
	sb.CreatedAt, sb.UpdatedAt, sb.LastActiveAt = time.Unix(0, created), time.Unix(0, updated), time.Unix(0, active)
	return sb, nil
}

// decodeRow decodes a row's spec and labels into sb.
func decodeRow(sb *Sandbox, spec, labels string) error {
	if err := json.Unmarshal([]byte(spec), &sb.Spec); err != nil {
		return fmt.Errorf("sandbox %s spec: %w", sb.ID, err)
	}
	if err := json.Unmarshal([]byte(labels), &sb.Labels); err != nil {
		return fmt.Errorf("sandbox %s labels: %w", sb.ID, err)
	}
	return nil
}

func encodeRow(sb *Sandbox) (spec, labels string, err error) {
	b, err := json.Marshal(sb.Spec)
	if err != nil {
		return "", "", err
	}
	l := sb.Labels
	if l == nil {
		l = map[string]string{}
	}
	lb, err := json.Marshal(l)
	if err != nil {
		return "", "", err
	}
	return string(b), string(lb), nil
}

// claim hands a pooled sandbox to its owner: owner, spec, labels and times
// change in one statement, only while the row is still the pool's, so that a
// row is never handed out twice. It moves the row to the end of the list
// order, where a sandbox created now belongs.
func (s *store) claim(ctx context.Context, sb *Sandbox) (bool, error) {
	spec, labels, err := encodeRow(sb)
	if err != nil {
		return false, err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE sandboxes SET owner = ?, spec = ?, labels = ?, created_at = ?, updated_at = ?, last_active = ?,
		seq = (SELECT MAX(seq) + 1 FROM sandboxes) WHERE id = ? AND owner = ? AND state = ?`,
		sb.Owner, spec, labels, sb.CreatedAt.UnixNano(), sb.UpdatedAt.UnixNano(), sb.LastActiveAt.UnixNano(), sb.ID, poolOwner, StateRunning)
	if err != nil {
		return false, fmt.Errorf("claim sandbox %s: %w", sb.ID, err)
	}
	// Forgotten whatever the answer: the next read asks the database.
	s.mu.Lock()
	delete(s.rows, sb.ID)
	s.mu.Unlock()
	n, err := res.RowsAffected()
	return n == 1, err
}
