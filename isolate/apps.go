package isolate

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/bothy/bothy/agent/wire"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/db"
	"github.com/bothy/bothy/internal/errclass"
	"github.com/bothy/bothy/supervisor"
)

// AppLimits bound one app.
type AppLimits struct {
	TimeoutMs    int64   `json:"timeout_ms,omitempty"`
	MemoryMB     int64   `json:"memory_mb,omitempty"`
	StorageBytes int64   `json:"storage_bytes,omitempty"`
	RatePerSec   float64 `json:"rate_per_sec,omitempty"` // 0: the server's default
	Burst        int     `json:"burst,omitempty"`
}

// App is one deployed app.
type App struct {
	ID        string
	Owner     string
	Name      string
	Runtime   string
	Version   int
	Code      string
	Env       map[string]string
	Limits    AppLimits
	CreatedAt time.Time
	UpdatedAt time.Time
}

// CodeSHA256 identifies the app's current code.
func (a App) CodeSHA256() string {
	s := sha256.Sum256([]byte(a.Code))
	return hex.EncodeToString(s[:])
}

// App defaults and caps.
const (
	DefaultAppTimeout      = 10 * time.Second
	MaxAppTimeout          = 60 * time.Second
	DefaultAppStorageBytes = 64 << 20
	MaxAppStorageBytes     = 10 << 30
	MaxAppCodeBytes        = 1 << 20
	maxAppBody             = 4 << 20
	maxAppLogs             = 64 << 10
)

var appName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// appStore keeps apps and their versions in bothy's database.
type appStore struct {
	db  *sql.DB
	dir string
}

var appMigrations = []string{
	`CREATE TABLE apps (
		id TEXT PRIMARY KEY,
		owner TEXT NOT NULL,
		name TEXT NOT NULL,
		runtime TEXT NOT NULL,
		version INTEGER NOT NULL,
		code TEXT NOT NULL,
		env TEXT NOT NULL,
		limits TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		UNIQUE (owner, name))`,
	`CREATE TABLE app_versions (
		app_id TEXT NOT NULL,
		version INTEGER NOT NULL,
		runtime TEXT NOT NULL,
		code TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (app_id, version))`,
}

func openAppStore(ctx context.Context, d *sql.DB, dir string) (*appStore, error) {
	if err := db.Migrate(ctx, d, "isolate", appMigrations); err != nil {
		return nil, err
	}
	return &appStore{db: d, dir: dir}, nil
}

func (a *appStore) get(ctx context.Context, owner, name string) (App, error) {
	var app App
	var env, limits string
	var created, updated int64
	err := a.db.QueryRowContext(ctx, `SELECT id, owner, name, runtime, version, code, env, limits, created_at, updated_at
		FROM apps WHERE owner = ? AND name = ?`, owner, name).Scan(&app.ID, &app.Owner, &app.Name, &app.Runtime,
		&app.Version, &app.Code, &env, &limits, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return App{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("app %s not found", name))
	}
	if err != nil {
		return App{}, err
	}
	_ = json.Unmarshal([]byte(env), &app.Env)
	_ = json.Unmarshal([]byte(limits), &app.Limits)
	app.CreatedAt, app.UpdatedAt = time.UnixMilli(created), time.UnixMilli(updated)
	return app, nil
}

// DeployOptions is a new version of an app.
type DeployOptions struct {
	Runtime string
	Code    string
	Env     map[string]string
	Limits  AppLimits
}

func (o *DeployOptions) validate() error {
	bad := func(format string, a ...any) error {
		return cerrdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, a...))
	}
	switch o.Runtime {
	case wire.RuntimePython, wire.RuntimeNode:
	case "javascript", "js":
		o.Runtime = wire.RuntimeNode
	default:
		return bad("runtime %q: apps run on python or node", o.Runtime)
	}
	if strings.TrimSpace(o.Code) == "" {
		return bad("code is required")
	}
	if len(o.Code) > MaxAppCodeBytes {
		return bad("code is %d bytes; the limit is %d", len(o.Code), MaxAppCodeBytes)
	}
	for k, v := range o.Env {
		if !envName.MatchString(k) || strings.ContainsRune(v, 0) {
			return bad("env: %q is not a valid variable name", k)
		}
	}
	l := &o.Limits
	switch {
	case l.TimeoutMs == 0:
		l.TimeoutMs = DefaultAppTimeout.Milliseconds()
	case l.TimeoutMs < 1 || l.TimeoutMs > MaxAppTimeout.Milliseconds():
		return bad("limits.timeout_ms must be between 1 and %d", MaxAppTimeout.Milliseconds())
	}
	if l.MemoryMB != 0 && (l.MemoryMB < MinMemoryMB || l.MemoryMB > MaxMemoryMB) {
		return bad("limits.memory_mb must be between %d and %d", MinMemoryMB, MaxMemoryMB)
	}
	switch {
	case l.StorageBytes == 0:
		l.StorageBytes = DefaultAppStorageBytes
	case l.StorageBytes < 64<<10 || l.StorageBytes > MaxAppStorageBytes:
		return bad("limits.storage_bytes must be between %d and %d", 64<<10, int64(MaxAppStorageBytes))
	}
	if l.RatePerSec < 0 || l.RatePerSec > 1e6 || l.Burst < 0 || l.Burst > 1e6 {
		return bad("limits.rate_per_sec and limits.burst must be between 0 and 1000000")
	}
	return nil
}

// Deploy stores a new version of owner's app name. A warm runner of the old
// version is drained at its next request; the app's data is kept.
func (s *Service) Deploy(ctx context.Context, owner, name string, o DeployOptions) (App, error) {
	if !appName.MatchString(name) {
		return App{}, cerrdefs.ErrInvalidArgument.WithMessage(
			"app name must be 1-63 lower-case letters, digits and dashes, starting and ending with a letter or digit")
	}
	if err := o.validate(); err != nil {
		return App{}, err
	}
	env, _ := json.Marshal(o.Env)
	limits, _ := json.Marshal(o.Limits)
	now := time.Now().UnixMilli()
	tx, err := s.apps.db.BeginTx(ctx, nil)
	if err != nil {
		return App{}, err
	}
	defer tx.Rollback()
	var id string
	var version int
	err = tx.QueryRowContext(ctx, `SELECT id, version FROM apps WHERE owner = ? AND name = ?`, owner, name).Scan(&id, &version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		id, version = newID("app-", 8), 1
		_, err = tx.ExecContext(ctx, `INSERT INTO apps (id, owner, name, runtime, version, code, env, limits, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, owner, name, o.Runtime, version, o.Code, string(env), string(limits), now, now)
	case err == nil:
		version++
		_, err = tx.ExecContext(ctx, `UPDATE apps SET runtime = ?, version = ?, code = ?, env = ?, limits = ?, updated_at = ? WHERE id = ?`,
			o.Runtime, version, o.Code, string(env), string(limits), now, id)
	}
	if err != nil {
		return App{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO app_versions (app_id, version, runtime, code, created_at) VALUES (?, ?, ?, ?, ?)`,
		id, version, o.Runtime, o.Code, now); err != nil {
		return App{}, err
	}
	if err := tx.Commit(); err != nil {
		return App{}, err
	}
	return s.apps.get(ctx, owner, name)
}

// GetApp returns owner's app name.
func (s *Service) GetApp(ctx context.Context, owner, name string) (App, error) {
	return s.apps.get(ctx, owner, name)
}

// Apps lists owner's apps by name.
func (s *Service) Apps(ctx context.Context, owner string) ([]App, error) {
	rows, err := s.apps.db.QueryContext(ctx, `SELECT name FROM apps WHERE owner = ? ORDER BY name`, owner)
	if err != nil {
		return nil, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	out := make([]App, 0, len(names))
	for _, n := range names {
		a, err := s.apps.get(ctx, owner, n)
		if err == nil {
			out = append(out, a)
		}
	}
	return out, nil
}

// StorageBytes is the size of the app's database.
func (s *Service) StorageBytes(ctx context.Context, app App) int64 {
	h := s.host(app.ID)
	// An invoke in progress holds the database; a listing does not wait for
	// it, and reads the file's size instead.
	select {
	case h.sem <- struct{}{}:
		defer h.unlock()
		if h.db != nil {
			return h.db.size(ctx)
		}
	default:
	}
	fi, err := os.Stat(s.appDBPath(app.ID))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// DeleteApp removes owner's app, its runner and its database.
func (s *Service) DeleteApp(ctx context.Context, owner, name string) error {
	app, err := s.apps.get(ctx, owner, name)
	if err != nil {
		return err
	}
	h := s.host(app.ID)
	if err := h.lock(ctx); err != nil {
		return err
	}
	defer h.unlock()
	if _, err := s.apps.db.ExecContext(ctx, `DELETE FROM apps WHERE id = ?`, app.ID); err != nil {
		return err
	}
	if _, err := s.apps.db.ExecContext(ctx, `DELETE FROM app_versions WHERE app_id = ?`, app.ID); err != nil {
		return err
	}
	if h.r != nil {
		s.destroy(h.r)
		h.r = nil
	}
	if h.db != nil {
		h.db.close()
		h.db = nil
	}
	s.mu.Lock()
	delete(s.live, app.ID)
	s.mu.Unlock()
	return os.RemoveAll(filepath.Join(s.apps.dir, app.ID))
}

func (s *Service) appDBPath(id string) string { return filepath.Join(s.apps.dir, id, "app.db") }

// appHost is an app's runner and database. Its invokes run one at a time.
type appHost struct {
	sem      chan struct{}
	r        *runner
	version  int
	lastUsed time.Time
	db       *appDB
	quota    int64 // the storage quota db was last given
}

func (h *appHost) lock(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *appHost) unlock() { <-h.sem }

// evictIfIdle takes the runner away when the app has been idle for ttl and no
// invoke is running; called with Service.mu held.
func (h *appHost) evictIfIdle(now time.Time, ttl time.Duration) *runner {
	select {
	case h.sem <- struct{}{}:
	default:
		return nil
	}
	defer h.unlock()
	if h.r == nil || now.Sub(h.lastUsed) <= ttl {
		return nil
	}
	r := h.r
	h.r = nil
	return r
}

// Warm says whether a runner holds app loaded now (or is serving it).
func (s *Service) Warm(app App) bool {
	s.mu.Lock()
	h := s.live[app.ID]
	s.mu.Unlock()
	if h == nil {
		return false
	}
	select {
	case h.sem <- struct{}{}:
	default:
		return true // a request holds it
	}
	defer h.unlock()
	return h.r != nil
}

func (s *Service) host(id string) *appHost {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.live[id]
	if !ok {
		h = &appHost{sem: make(chan struct{}, 1)}
		s.live[id] = h
	}
	return h
}

// Request is an HTTP request for an app.
type Request struct {
	Method  string
	Path    string // beginning with "/"
	Query   string
	Headers map[string]string
	Body    []byte
}

// Response is what an invoke produced.
type Response struct {
	Status      int
	Headers     map[string]string
	Body        []byte
	Error       string // the app's exception, or why it could not answer
	TimedOut    bool
	Logs        string
	LogsTrunc   bool
	CPUMs       float64
	RowsRead    int64
	RowsWritten int64
	Version     int
	Warm        bool // the app's runner was already loaded
}

// Invoke calls app (as GetApp returned it) with req. Storage calls made by
// the app join one transaction that commits when the app answers and rolls
// back when it throws, times out or dies. The call is admitted against the
// app's and its owner's rates first, and recorded in the ledger.
func (s *Service) Invoke(ctx context.Context, app App, req Request) (Response, error) {
	if s.cfg.Limits != nil {
		release, err := s.cfg.Limits.Admit(app.Owner, app.Name, supervisor.Rate{PerSec: app.Limits.RatePerSec, Burst: app.Limits.Burst})
		if err != nil {
			return Response{}, err
		}
		defer release()
	}
	t0 := time.Now()
	res, err := s.invoke(ctx, app, req)
	if err == nil && s.cfg.Ledger != nil {
		output := res.Logs
		if res.Error != "" {
			output = res.Error + "\n" + output
		}
		s.cfg.Ledger.Record(supervisor.Entry{
			Key: app.Owner, Kind: "invoke", App: app.Name, Status: res.Status, Error: res.Error,
			DurationMs: float64(time.Since(t0).Microseconds()) / 1000, CPUMs: res.CPUMs,
			RowsRead: res.RowsRead, RowsWritten: res.RowsWritten, BytesIn: int64(len(req.Body)), BytesOut: int64(len(res.Body)),
			Output: output, Truncated: res.LogsTrunc, Failed: res.Status >= 500,
		})
	}
	return res, err
}

func (s *Service) invoke(ctx context.Context, app App, req Request) (Response, error) {
	if len(req.Body) > maxAppBody {
		return Response{}, cerrdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("request body over %d bytes", maxAppBody))
	}
	h := s.host(app.ID)
	if err := h.lock(ctx); err != nil {
		return Response{}, err
	}
	defer h.unlock()
	s.mu.Lock()
	deleted := s.live[app.ID] != h // DeleteApp ran while this request waited
	s.mu.Unlock()
	if deleted {
		return Response{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("app %s not found", app.Name))
	}
	h.lastUsed = time.Now()
	if h.r != nil && (h.version != app.Version || !h.r.ep.Connected()) {
		s.destroy(h.r) // a new version drains the old runner
		h.r = nil
	}
	out := Response{Version: app.Version, Warm: h.r != nil}
	if h.r == nil {
		mem := app.Limits.MemoryMB
		if mem == 0 {
			mem = s.cfg.DefaultMemoryMB
		}
		mem = memoryClass(mem)
		r, _, err := s.pool(profile{runtime: app.Runtime, memoryMB: mem}).take(ctx)
		if err != nil {
			return Response{}, err
		}
		if err := r.conn.AppInit(ctx, wire.AppInit{Code: app.Code, Env: app.Env, TimeoutMs: app.Limits.TimeoutMs, MaxOutput: maxAppLogs}); err != nil {
			s.destroy(r)
			var ae *agent.AppError
			if errors.As(err, &ae) {
				out.Status, out.Error = 500, "the app failed to load: "+ae.Msg
				return out, nil
			}
			return Response{}, errclass.Wrap(cerrdefs.ErrUnavailable, err, "the app's runner failed")
		}
		h.r, h.version = r, app.Version
	}
	if h.db == nil {
		if err := os.MkdirAll(filepath.Dir(s.appDBPath(app.ID)), 0o700); err != nil {
			return Response{}, err
		}
		d, err := openAppDB(ctx, s.appDBPath(app.ID), app.Limits.StorageBytes)
		if err != nil {
			return Response{}, err
		}
		h.db, h.quota = d, app.Limits.StorageBytes
	}
	if h.quota != app.Limits.StorageBytes { // a new version changed it
		if err := h.db.setQuota(ctx, app.Limits.StorageBytes); err != nil {
			return Response{}, err
		}
		h.quota = app.Limits.StorageBytes
	}
	// The invoke's own context keeps the transaction alive to its end even
	// when the caller goes: the rollback below still needs it.
	tctx := context.WithoutCancel(ctx)
	tx, err := h.db.conn.BeginTx(tctx, nil)
	if err != nil {
		return Response{}, fmt.Errorf("begin app transaction: %w", err)
	}
	h.db.policy.rolledBack.Store(false)
	t := &txn{db: h.db, tx: tx}
	msg, _ := json.Marshal(map[string]any{"op": "invoke", "request": map[string]any{
		"method": req.Method, "path": req.Path, "query": req.Query, "headers": req.Headers,
		"url":  "http://" + app.Name + ".app" + req.Path + querySuffix(req.Query),
		"body": base64.StdEncoding.EncodeToString(req.Body),
	}})
	final, err := h.r.conn.Invoke(ctx, wire.InvokeRequest{TimeoutMs: app.Limits.TimeoutMs, Message: msg},
		func(b []byte) []byte { return t.handle(tctx, b) })
	if err != nil {
		_ = tx.Rollback()
		s.destroy(h.r)
		h.r = nil
		if ctx.Err() != nil {
			return Response{}, ctx.Err()
		}
		return Response{}, errclass.Wrap(cerrdefs.ErrUnavailable, err, "the app's runner failed")
	}
	var m struct {
		Op        string            `json:"op"`
		Status    int               `json:"status"`
		Headers   map[string]string `json:"headers"`
		Body      []byte            `json:"body"`
		Message   string            `json:"message"`
		Logs      string            `json:"logs"`
		LogsTrunc bool              `json:"logs_truncated"`
		CPUMs     float64           `json:"cpu_ms"`
		TimedOut  bool              `json:"timed_out"`
		Recycle   bool              `json:"recycle"`
	}
	if err := json.Unmarshal(final, &m); err != nil {
		m.Op, m.Message, m.Recycle = "error", "the app's answer was malformed", true
	}
	out.Logs, out.LogsTrunc, out.CPUMs = m.Logs, m.LogsTrunc, m.CPUMs
	out.RowsRead, out.RowsWritten = t.rowsRead, t.rowsWritten
	if m.Recycle || m.TimedOut {
		s.destroy(h.r)
		h.r = nil
	}
	if m.Op != "response" {
		_ = tx.Rollback()
		out.Status, out.Error, out.TimedOut = 500, m.Message, m.TimedOut
		if m.TimedOut {
			out.Status = 504
		}
		return out, nil
	}
	if t.broken != "" {
		_ = tx.Rollback()
		out.Status, out.Error = 500, t.brokenError()
		return out, nil
	}
	if err := tx.Commit(); err != nil {
		out.Status, out.Error = 500, "the app's writes could not be committed: "+storageErr(err).Error()
		return out, nil
	}
	if m.Status < 100 || m.Status > 999 {
		m.Status = 500
	}
	out.Status, out.Headers, out.Body = m.Status, m.Headers, m.Body
	return out, nil
}

func querySuffix(q string) string {
	if q == "" {
		return ""
	}
	return "?" + q
}

// EvictApps evicts every idle app runner now, as the janitor does after
// Config.AppIdle.
func (s *Service) EvictApps() {
	s.mu.Lock()
	var gone []*runner
	for _, h := range s.live {
		if r := h.evictIfIdle(time.Now(), -1); r != nil {
			gone = append(gone, r)
		}
	}
	s.mu.Unlock()
	for _, r := range gone {
		s.destroy(r)
	}
}
