package isolate

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Per-app storage limits (Cloudflare's Durable Object limits, where it has one).
const (
	maxKeyBytes      = 2048
	maxValueBytes    = 2 << 20
	maxSQLBytes      = 100_000
	maxSQLParams     = 100
	maxListEntries   = 10_000
	kvTable          = "_bothy_kv"
	sqliteLimitLen   = 0 // SQLITE_LIMIT_LENGTH
	sqliteLimitSQL   = 1 // SQLITE_LIMIT_SQL_LENGTH
	sqliteLimitAttch = 7 // SQLITE_LIMIT_ATTACHED
	sqliteLimitVars  = 9 // SQLITE_LIMIT_VARIABLE_NUMBER
)

// appDB is one app's own SQLite file, on one connection: invokes of an app
// are serialised, as a Durable Object's are.
type appDB struct {
	db     *sql.DB
	conn   *sql.Conn
	policy *policy
}

// openAppDB opens (creating) the app's database with its size quota and its
// policy, so that no statement can name another file, change a setting or end
// the invoke's transaction.
func openAppDB(ctx context.Context, path string, quotaBytes int64) (*appDB, error) {
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(5000)", "synchronous(NORMAL)",
		"trusted_schema(0)", fmt.Sprintf("max_page_count(%d)", maxPages(quotaBytes))} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	d, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	d.SetMaxOpenConns(1)
	conn, err := d.Conn(ctx)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("open app database: %w", err)
	}
	for id, v := range map[int]int{sqliteLimitAttch: 0, sqliteLimitSQL: maxSQLBytes, sqliteLimitVars: maxSQLParams, sqliteLimitLen: maxValueBytes + 1024} {
		if _, err := sqlite.Limit(conn, id, v); err != nil {
			conn.Close()
			d.Close()
			return nil, fmt.Errorf("limit app database: %w", err)
		}
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+kvTable+` (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID`); err != nil {
		conn.Close()
		d.Close()
		return nil, fmt.Errorf("prepare app database: %w", err)
	}
	p := &policy{}
	if err := p.install(ctx, conn); err != nil {
		conn.Close()
		d.Close()
		return nil, err
	}
	return &appDB{db: d, conn: conn, policy: p}, nil
}

// maxPages is a storage quota in SQLite's default 4 KiB pages.
func maxPages(quotaBytes int64) int64 { return max(quotaBytes/4096, 16) }

// setQuota changes the database's size quota.
func (a *appDB) setQuota(ctx context.Context, quotaBytes int64) error {
	_, err := a.conn.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", maxPages(quotaBytes)))
	return err
}

func (a *appDB) close() {
	a.conn.Close()
	a.db.Close()
}

// size is the database's size in bytes.
func (a *appDB) size(ctx context.Context) int64 {
	var pages, size int64
	_ = a.conn.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages)
	_ = a.conn.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&size)
	return pages * size
}

// storageCall is a storage message from an app's runtime host.
type storageCall struct {
	Op     string          `json:"op"`
	ID     int64           `json:"id"`
	Call   string          `json:"call"`
	Key    *string         `json:"key"`
	Value  json.RawMessage `json:"value"`
	Prefix string          `json:"prefix"`
	Limit  int             `json:"limit"`
	Query  string          `json:"query"`
	Params []any           `json:"params"`
}

// storageResult answers a storageCall.
type storageResult struct {
	Op          string           `json:"op"`
	ID          int64            `json:"id"`
	Found       bool             `json:"found,omitempty"`
	Value       json.RawMessage  `json:"value,omitempty"`
	Entries     [][2]any         `json:"entries,omitempty"`
	Rows        []map[string]any `json:"rows,omitempty"`
	Columns     []string         `json:"columns,omitempty"`
	RowsRead    int64            `json:"rows_read"`
	RowsWritten int64            `json:"rows_written"`
	Error       string           `json:"error,omitempty"`
}

// txn is one invoke's transaction and what it has metered.
type txn struct {
	db *appDB
	tx *sql.Tx
	// broken, when set, says why the transaction was rolled back whole
	// under the invoke (a statement's RAISE(ROLLBACK), OR ROLLBACK, or the
	// storage quota, on which SQLite rolls back): every later call fails,
	// and the invoke keeps nothing.
	broken      string
	savepoints  int
	rowsRead    int64
	rowsWritten int64
	calls       int
}

// brokenError answers every storage call after the invoke's transaction was
// rolled back under it, and the invoke itself.
func (t *txn) brokenError() string {
	return "the invoke's transaction was rolled back (" + t.broken + "): nothing this invoke wrote is kept"
}

// handle runs one storage call in t and returns the reply to send the host.
func (t *txn) handle(ctx context.Context, msg []byte) []byte {
	var c storageCall
	res := storageResult{Op: "storage_result"}
	if err := json.Unmarshal(msg, &c); err != nil || c.Op != "storage" {
		res.Error = "malformed storage call"
	} else {
		res.ID = c.ID
		t.calls++
		if t.broken != "" {
			res.Error = t.brokenError()
		} else if err := t.do(ctx, &c, &res); err != nil {
			res.Error = err.Error()
		}
		if t.db.policy.rolledBack.Load() && t.broken == "" {
			t.broken = res.Error
			if t.broken == "" {
				t.broken = "a statement"
			}
			res.Error = t.brokenError()
		}
		t.rowsRead += res.RowsRead
		t.rowsWritten += res.RowsWritten
	}
	b, err := json.Marshal(res)
	if err != nil {
		b, _ = json.Marshal(storageResult{Op: "storage_result", ID: c.ID, Error: "the result cannot be encoded: " + err.Error()})
	}
	return b
}

func (t *txn) do(ctx context.Context, c *storageCall, res *storageResult) error {
	key := func() (string, error) {
		if c.Key == nil || *c.Key == "" {
			return "", errors.New("a key is required")
		}
		if len(*c.Key) > maxKeyBytes {
			return "", fmt.Errorf("key is %d bytes; the limit is %d", len(*c.Key), maxKeyBytes)
		}
		return *c.Key, nil
	}
	switch c.Call {
	case "get":
		k, err := key()
		if err != nil {
			return err
		}
		var v string
		err = t.tx.QueryRowContext(ctx, `SELECT value FROM `+kvTable+` WHERE key = ?`, k).Scan(&v)
		res.RowsRead = 1
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return storageErr(err)
		}
		res.Found, res.Value = true, json.RawMessage(v)
	case "put":
		k, err := key()
		if err != nil {
			return err
		}
		v := c.Value
		if len(v) == 0 {
			v = json.RawMessage("null")
		}
		if len(v) > maxValueBytes {
			return fmt.Errorf("value is %d bytes of JSON; the limit is %d", len(v), maxValueBytes)
		}
		if !json.Valid(v) {
			return errors.New("value is not JSON")
		}
		if _, err := t.tx.ExecContext(ctx, `INSERT INTO `+kvTable+` (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, string(v)); err != nil {
			return storageErr(err)
		}
		res.RowsWritten = 1
	case "delete":
		k, err := key()
		if err != nil {
			return err
		}
		r, err := t.tx.ExecContext(ctx, `DELETE FROM `+kvTable+` WHERE key = ?`, k)
		if err != nil {
			return storageErr(err)
		}
		n, _ := r.RowsAffected()
		res.Found, res.RowsWritten = n > 0, n
	case "list":
		limit := c.Limit
		if limit <= 0 || limit > maxListEntries {
			limit = maxListEntries
		}
		rows, err := t.tx.QueryContext(ctx, `SELECT key, value FROM `+kvTable+` WHERE substr(key, 1, length(?)) = ? ORDER BY key LIMIT ?`,
			c.Prefix, c.Prefix, limit)
		if err != nil {
			return storageErr(err)
		}
		defer rows.Close()
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				return storageErr(err)
			}
			res.Entries = append(res.Entries, [2]any{k, json.RawMessage(v)})
		}
		res.RowsRead = int64(len(res.Entries))
		return storageErr(rows.Err())
	case "sql":
		return t.sql(ctx, c, res)
	case "begin":
		t.savepoints++
		_, err := t.tx.ExecContext(ctx, fmt.Sprintf("SAVEPOINT sp%d", t.savepoints))
		return storageErr(err)
	case "commit", "rollback":
		if t.savepoints == 0 {
			return errors.New(c.Call + " without a transaction")
		}
		q := fmt.Sprintf("RELEASE sp%d", t.savepoints)
		if c.Call == "rollback" {
			q = fmt.Sprintf("ROLLBACK TO sp%d; RELEASE sp%d", t.savepoints, t.savepoints)
		}
		t.savepoints--
		_, err := t.tx.ExecContext(ctx, q)
		return storageErr(err)
	default:
		return fmt.Errorf("unknown storage call %q", c.Call)
	}
	return nil
}

// sql runs the statements of one sql.exec; the parameters bind to the last.
func (t *txn) sql(ctx context.Context, c *storageCall, res *storageResult) error {
	if len(c.Query) > maxSQLBytes {
		return fmt.Errorf("statement is %d bytes; the limit is %d", len(c.Query), maxSQLBytes)
	}
	if len(c.Params) > maxSQLParams {
		return fmt.Errorf("%d parameters; the limit is %d", len(c.Params), maxSQLParams)
	}
	if strings.TrimSpace(c.Query) == "" {
		return errors.New("the query has no statement")
	}
	var before int64
	if err := t.tx.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&before); err != nil {
		return storageErr(err)
	}
	params := make([]any, len(c.Params))
	for i, p := range c.Params {
		switch v := p.(type) {
		case bool: // SQLite has no booleans
			params[i] = map[bool]int{false: 0, true: 1}[v]
		case map[string]any, []any:
			b, _ := json.Marshal(v)
			params[i] = string(b)
		default:
			params[i] = v
		}
	}
	// SQLite runs every statement of the query, under the app's policy;
	// the rows are the last statement's.
	t.db.policy.enforce.Store(true)
	defer t.db.policy.enforce.Store(false)
	rows, err := t.tx.QueryContext(ctx, c.Query, params...)
	if err != nil {
		return t.db.policy.explain(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return storageErr(err)
	}
	res.Columns = cols
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return t.db.policy.explain(err)
		}
		row := make(map[string]any, len(cols))
		for i, col := range cols {
			if b, ok := vals[i].([]byte); ok {
				row[col] = string(b)
			} else {
				row[col] = vals[i]
			}
		}
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return t.db.policy.explain(err)
	}
	rows.Close()
	t.db.policy.enforce.Store(false)
	var after int64
	if err := t.tx.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&after); err != nil {
		return storageErr(err)
	}
	res.RowsRead = int64(len(res.Rows))
	res.RowsWritten = after - before
	return nil
}

// explain is storageErr with the policy's reason for a refusal.
func (p *policy) explain(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_AUTH {
		if why := p.denied.Load(); why != nil {
			return errors.New(*why)
		}
	}
	return storageErr(err)
}

// storageErr strips the driver's prefix from SQLite's message; the quota
// appears as SQLite's "database or disk is full".
func storageErr(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if i := strings.Index(msg, "SQL logic error: "); i >= 0 {
		msg = msg[i+len("SQL logic error: "):]
	}
	if se := (*sqlite.Error)(nil); errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		msg = "the app's storage quota is used up (" + msg + ")"
	}
	return errors.New(msg)
}

// readPragmas are the PRAGMAs an app may run, as statements or as
// table-valued functions: they only read its own schema and pages.
var readPragmas = map[string]bool{
	"table_info": true, "table_xinfo": true, "table_list": true, "index_list": true, "index_info": true,
	"index_xinfo": true, "foreign_key_list": true, "foreign_key_check": true, "integrity_check": true,
	"quick_check": true, "page_count": true, "freelist_count": true,
}

// policy is SQLite's own authorizer for an app's statements: SQLite asks it
// about every operation as a statement is compiled (trigger bodies included),
// however the statement was spelled. It holds only while enforce is set, so
// that bothy's own statements on the connection (its transaction, the
// key-value table, metering) are not bound by it.
type policy struct {
	enforce atomic.Bool
	// denied says why the last refusal was made, for the error message.
	denied atomic.Pointer[string]
	// rolledBack is set when a transaction on the connection is rolled back
	// whole: by a statement (RAISE(ROLLBACK) in a trigger, OR ROLLBACK), it
	// ends the invoke's transaction, which must then keep nothing.
	rolledBack atomic.Bool
}

func (p *policy) deny(why string) sqlite.AuthorizerReturnCode {
	p.denied.Store(&why)
	return sqlite.AuthorizerDeny
}

// authorize is the authorizer callback.
func (p *policy) authorize(action sqlite.AuthorizerActionCode, arg1, arg2, database, _ string) sqlite.AuthorizerReturnCode {
	if !p.enforce.Load() {
		return sqlite.AuthorizerOK
	}
	switch action {
	case sqlite.AuthAttach, sqlite.AuthDetach:
		return p.deny("ATTACH and DETACH are not allowed: an app has one database")
	case sqlite.AuthTransaction, sqlite.AuthSavepoint:
		return p.deny("transaction control is not allowed: every invoke is one transaction; use storage.transaction()")
	case sqlite.AuthPragma:
		if !readPragmas[strings.ToLower(arg1)] {
			return p.deny("PRAGMA " + strings.ToLower(arg1) + " is not allowed")
		}
	case sqlite.AuthFunction:
		if strings.EqualFold(arg2, "load_extension") {
			return p.deny("load_extension is not allowed")
		}
	}
	if database != "" && database != "main" && database != "temp" {
		return p.deny("only the app's own database may be used")
	}
	return sqlite.AuthorizerOK
}

// install puts p on the physical connection c.
func (p *policy) install(ctx context.Context, c *sql.Conn) error {
	return c.Raw(func(dc any) error {
		a, ok := dc.(sqlite.AuthorizerRegisterer)
		h, ok2 := dc.(interface{ RegisterRollbackHook(sqlite.RollbackHookFn) })
		if !ok || !ok2 {
			return errors.New("the SQLite driver has no authorizer or rollback hook")
		}
		h.RegisterRollbackHook(func() { p.rolledBack.Store(true) })
		return a.RegisterAuthorizer(p.authorize)
	})
}
