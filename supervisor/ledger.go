package supervisor

import (
	"context"
	"database/sql"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bothy/bothy/db"
)

// Entry is one run or invoke, as the ledger records it.
type Entry struct {
	Time        time.Time
	Key         string // the API key ID
	Kind        string // "run" or "invoke"
	App         string // the app's name; for a run, the runtime
	Status      int    // HTTP status for an invoke; exit code for a run
	Error       string
	DurationMs  float64
	CPUMs       float64
	RowsRead    int64
	RowsWritten int64
	BytesIn     int64
	BytesOut    int64
	Output      string // an excerpt of stdout/stderr or the app's logs
	Truncated   bool
	Failed      bool // an error, a timeout, an OOM kill, a 5xx
}

// UsageRow is one key's use of one app (or runtime) in one hour.
type UsageRow struct {
	Hour        time.Time
	Key         string
	Kind        string
	App         string
	Requests    int64
	Errors      int64
	DurationMs  float64
	CPUMs       float64
	RowsRead    int64
	RowsWritten int64
	BytesIn     int64
	BytesOut    int64
}

// excerptBytes bounds the output a log entry keeps.
const excerptBytes = 2048

// logRetention is how long the request log keeps an entry; the hourly usage
// is kept.
const logRetention = 7 * 24 * time.Hour

// Ledger records runs and invokes off the hot path: Record queues an entry,
// and one goroutine writes queued entries in batches, adding them to the
// request log and to the hourly usage aggregates in one transaction.
type Ledger struct {
	db      *sql.DB
	log     *slog.Logger
	queue   chan Entry
	flushes chan chan struct{}
	dropped atomic.Int64
	done    chan struct{}
	wg      sync.WaitGroup
}

var ledgerMigrations = []string{
	`CREATE TABLE request_log (
		id INTEGER PRIMARY KEY,
		at INTEGER NOT NULL,
		key_id TEXT NOT NULL,
		kind TEXT NOT NULL,
		app TEXT NOT NULL,
		status INTEGER NOT NULL,
		error TEXT NOT NULL,
		duration_ms REAL NOT NULL,
		cpu_ms REAL NOT NULL,
		rows_read INTEGER NOT NULL,
		rows_written INTEGER NOT NULL,
		bytes_in INTEGER NOT NULL,
		bytes_out INTEGER NOT NULL,
		output TEXT NOT NULL,
		truncated INTEGER NOT NULL)`,
	`CREATE INDEX request_log_app ON request_log (key_id, kind, app, id)`,
	`CREATE TABLE usage_hourly (
		hour INTEGER NOT NULL,
		key_id TEXT NOT NULL,
		kind TEXT NOT NULL,
		app TEXT NOT NULL,
		requests INTEGER NOT NULL,
		errors INTEGER NOT NULL,
		duration_ms REAL NOT NULL,
		cpu_ms REAL NOT NULL,
		rows_read INTEGER NOT NULL,
		rows_written INTEGER NOT NULL,
		bytes_in INTEGER NOT NULL,
		bytes_out INTEGER NOT NULL,
		PRIMARY KEY (hour, key_id, kind, app))`,
}

// NewLedger migrates the ledger's tables and starts its writer.
func NewLedger(ctx context.Context, d *sql.DB, log *slog.Logger) (*Ledger, error) {
	if err := db.Migrate(ctx, d, "ledger", ledgerMigrations); err != nil {
		return nil, err
	}
	l := &Ledger{db: d, log: log.With("component", "ledger"), queue: make(chan Entry, 8192),
		flushes: make(chan chan struct{}), done: make(chan struct{})}
	l.wg.Add(1)
	go l.writer()
	return l, nil
}

// Record queues e; it never blocks. When the queue is full the entry is
// dropped and counted.
func (l *Ledger) Record(e Entry) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if len(e.Output) > excerptBytes {
		e.Output, e.Truncated = e.Output[:excerptBytes], true
	}
	select {
	case l.queue <- e:
	default:
		l.dropped.Add(1)
	}
}

// Flush waits until every entry recorded before it is written.
func (l *Ledger) Flush(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case l.flushes <- ch:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is queued and stops the writer.
func (l *Ledger) Close() {
	close(l.done)
	l.wg.Wait()
}

func (l *Ledger) writer() {
	defer l.wg.Done()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	var batch []Entry
	drain := func() {
		for {
			select {
			case e := <-l.queue:
				batch = append(batch, e)
			default:
				return
			}
		}
	}
	write := func() {
		drain()
		if len(batch) > 0 {
			if err := l.write(batch); err != nil {
				l.log.Error("write request log", "entries", len(batch), "err", err)
			}
			batch = batch[:0]
		}
	}
	for {
		select {
		case e := <-l.queue:
			batch = append(batch, e)
			if len(batch) >= 1024 {
				write()
			}
		case <-tick.C:
			write()
		case <-prune.C:
			if _, err := l.db.Exec(`DELETE FROM request_log WHERE at < ?`, time.Now().Add(-logRetention).UnixMilli()); err != nil {
				l.log.Warn("prune request log", "err", err)
			}
		case ch := <-l.flushes:
			write()
			close(ch)
		case <-l.done:
			write()
			return
		}
	}
}

func (l *Ledger) write(batch []Entry) error {
	tx, err := l.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	logStmt, err := tx.Prepare(`INSERT INTO request_log (at, key_id, kind, app, status, error, duration_ms, cpu_ms,
		rows_read, rows_written, bytes_in, bytes_out, output, truncated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer logStmt.Close()
	usageStmt, err := tx.Prepare(`INSERT INTO usage_hourly (hour, key_id, kind, app, requests, errors, duration_ms, cpu_ms,
		rows_read, rows_written, bytes_in, bytes_out) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (hour, key_id, kind, app) DO UPDATE SET requests = requests + 1, errors = errors + excluded.errors,
		duration_ms = duration_ms + excluded.duration_ms, cpu_ms = cpu_ms + excluded.cpu_ms,
		rows_read = rows_read + excluded.rows_read, rows_written = rows_written + excluded.rows_written,
		bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out`)
	if err != nil {
		return err
	}
	defer usageStmt.Close()
	for _, e := range batch {
		failed := 0
		if e.Failed {
			failed = 1
		}
		if _, err := logStmt.Exec(e.Time.UnixMilli(), e.Key, e.Kind, e.App, e.Status, e.Error, e.DurationMs, e.CPUMs,
			e.RowsRead, e.RowsWritten, e.BytesIn, e.BytesOut, e.Output, e.Truncated); err != nil {
			return err
		}
		if _, err := usageStmt.Exec(e.Time.Truncate(time.Hour).Unix(), e.Key, e.Kind, e.App, failed, e.DurationMs, e.CPUMs,
			e.RowsRead, e.RowsWritten, e.BytesIn, e.BytesOut); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Logs returns the newest entries of key's app (kind "invoke") or runtime
// (kind "run"), newest first.
func (l *Ledger) Logs(ctx context.Context, key, kind, app string, limit int) ([]Entry, error) {
	if err := l.Flush(ctx); err != nil {
		return nil, err
	}
	rows, err := l.db.QueryContext(ctx, `SELECT at, key_id, kind, app, status, error, duration_ms, cpu_ms, rows_read,
		rows_written, bytes_in, bytes_out, output, truncated FROM request_log
		WHERE key_id = ? AND kind = ? AND app = ? ORDER BY id DESC LIMIT ?`, key, kind, app, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var at int64
		if err := rows.Scan(&at, &e.Key, &e.Kind, &e.App, &e.Status, &e.Error, &e.DurationMs, &e.CPUMs, &e.RowsRead,
			&e.RowsWritten, &e.BytesIn, &e.BytesOut, &e.Output, &e.Truncated); err != nil {
			return nil, err
		}
		e.Time = time.UnixMilli(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Usage returns the hourly usage rows of key (every key when key is empty)
// from since on, oldest first.
func (l *Ledger) Usage(ctx context.Context, key string, since time.Time) ([]UsageRow, error) {
	if err := l.Flush(ctx); err != nil {
		return nil, err
	}
	rows, err := l.db.QueryContext(ctx, `SELECT hour, key_id, kind, app, requests, errors, duration_ms, cpu_ms,
		rows_read, rows_written, bytes_in, bytes_out FROM usage_hourly
		WHERE (? = '' OR key_id = ?) AND hour >= ? ORDER BY hour, key_id, kind, app`,
		key, key, since.Truncate(time.Hour).Unix())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []UsageRow
	for rows.Next() {
		var u UsageRow
		var hour int64
		if err := rows.Scan(&hour, &u.Key, &u.Kind, &u.App, &u.Requests, &u.Errors, &u.DurationMs, &u.CPUMs,
			&u.RowsRead, &u.RowsWritten, &u.BytesIn, &u.BytesOut); err != nil {
			return nil, err
		}
		u.Hour = time.Unix(hour, 0).UTC()
		out = append(out, u)
	}
	return out, rows.Err()
}

// QueueDepth is how many entries wait to be written.
func (l *Ledger) QueueDepth() int { return len(l.queue) }

// Dropped counts entries lost to a full queue.
func (l *Ledger) Dropped() int64 { return l.dropped.Load() }
