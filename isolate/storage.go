package isolate

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"modernc.org/sqlite"
)

// Per-app storage limits (Cloudflare's Durable Object limits, where it has one).
const (
	maxKeyBytes      = 2048
	maxValueBytes    = 2 << 20
	maxSQLBytes      = 100_000
	maxSQLParams     = 100
	maxListEntries   = 10_000
	kvTable          = "_sandboxd_kv"
	sqliteLimitLen   = 0 // SQLITE_LIMIT_LENGTH
	sqliteLimitSQL   = 1 // SQLITE_LIMIT_SQL_LENGTH
	sqliteLimitAttch = 7 // SQLITE_LIMIT_ATTACHED
	sqliteLimitVars  = 9 // SQLITE_LIMIT_VARIABLE_NUMBER
)

// appDB is one app's own SQLite file, on one connection: invokes of an app
// are serialised, as a Durable Object's are.
type appDB struct {
	db   *sql.DB
	conn *sql.Conn
}

// openAppDB opens (creating) the app's database with its size quota, and with
// ATTACH made impossible, so that no statement can name another file.
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
	return &appDB{db: d, conn: conn}, nil
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
	tx          *sql.Tx
	savepoints  int
	rowsRead    int64
	rowsWritten int64
	calls       int
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
		if err := t.do(ctx, &c, &res); err != nil {
			res.Error = err.Error()
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
	stmts, err := splitSQL(c.Query)
	if err != nil {
		return err
	}
	var before int64
	if err := t.tx.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&before); err != nil {
		return storageErr(err)
	}
	for _, s := range stmts[:len(stmts)-1] {
		if _, err := t.tx.ExecContext(ctx, s); err != nil {
			return storageErr(err)
		}
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
	rows, err := t.tx.QueryContext(ctx, stmts[len(stmts)-1], params...)
	if err != nil {
		return storageErr(err)
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
			return storageErr(err)
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
		return storageErr(err)
	}
	rows.Close()
	var after int64
	if err := t.tx.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&after); err != nil {
		return storageErr(err)
	}
	res.RowsRead = int64(len(res.Rows))
	res.RowsWritten = after - before
	return nil
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
	if strings.Contains(msg, "database or disk is full") {
		msg = "the app's storage quota is used up (" + msg + ")"
	}
	return errors.New(msg)
}

// deniedStatements may not appear in an app's SQL: the invoke owns the
// transaction, and nothing may name another database file.
var deniedStatements = map[string]string{
	"ATTACH": "ATTACH is not allowed: an app has one database", "DETACH": "DETACH is not allowed",
	"VACUUM": "VACUUM is not allowed", "BEGIN": "use storage.transaction() instead of BEGIN",
	"COMMIT": "use storage.transaction() instead of COMMIT", "END": "use storage.transaction() instead of END",
	"ROLLBACK": "use storage.transaction() instead of ROLLBACK", "SAVEPOINT": "use storage.transaction() instead of SAVEPOINT",
	"RELEASE": "use storage.transaction() instead of RELEASE",
}

// readPragmas are the PRAGMAs an app may run: they only read its schema.
var readPragmas = map[string]bool{
	"TABLE_INFO": true, "TABLE_XINFO": true, "TABLE_LIST": true, "INDEX_LIST": true, "INDEX_INFO": true,
	"INDEX_XINFO": true, "FOREIGN_KEY_LIST": true, "FOREIGN_KEY_CHECK": true, "INTEGRITY_CHECK": true,
	"QUICK_CHECK": true, "PAGE_COUNT": true, "FREELIST_COUNT": true,
}

// splitSQL splits a query into statements, checking each against the denied
// statements. Quotes, comments and trigger bodies are respected.
func splitSQL(q string) ([]string, error) {
	var stmts []string
	var words []string // upper-cased words of the current statement
	start, depth := 0, 0
	inTrigger := func() bool {
		for i, w := range words {
			if w == "TRIGGER" && i <= 3 && words[0] == "CREATE" {
				return true
			}
		}
		return false
	}
	flush := func(end int) error {
		s := strings.TrimSpace(q[start:end])
		start = end + 1
		if s == "" {
			words = words[:0]
			return nil
		}
		if len(words) > 0 {
			if msg, ok := deniedStatements[words[0]]; ok {
				return errors.New(msg)
			}
			if words[0] == "PRAGMA" {
				name := ""
				if len(words) > 1 {
					name = words[1]
					if i := strings.LastIndexByte(name, '.'); i >= 0 {
						name = name[i+1:]
					}
				}
				if !readPragmas[name] || strings.Contains(s, "=") {
					return fmt.Errorf("PRAGMA %s is not allowed", strings.ToLower(name))
				}
			}
			for _, w := range words {
				if name, ok := strings.CutPrefix(w, "PRAGMA_"); ok && !readPragmas[name] {
					return fmt.Errorf("%s is not allowed", strings.ToLower(w))
				}
				if w == "LOAD_EXTENSION" {
					return errors.New("load_extension is not allowed")
				}
			}
		}
		stmts = append(stmts, s)
		words = words[:0]
		return nil
	}
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"' || c == '`' || c == '[':
			closer := c
			if c == '[' {
				closer = ']'
			}
			j := strings.IndexByte(q[i+1:], closer)
			if j < 0 {
				return nil, errors.New("unterminated quote in SQL")
			}
			i += j + 1
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				i = len(q)
			} else {
				i += j
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := strings.Index(q[i+2:], "*/")
			if j < 0 {
				return nil, errors.New("unterminated comment in SQL")
			}
			i += j + 3
		case c == ';':
			if depth == 0 {
				if err := flush(i); err != nil {
					return nil, err
				}
			}
		case isWordByte(c):
			j := i
			for j < len(q) && (isWordByte(q[j]) || q[j] == '.') {
				j++
			}
			w := strings.ToUpper(q[i:j])
			words = append(words, w)
			if inTrigger() {
				switch w {
				case "BEGIN", "CASE":
					depth++
				case "END":
					depth = max(depth-1, 0)
				}
			}
			i = j - 1
		}
	}
	if err := flush(len(q)); err != nil {
		return nil, err
	}
	if len(stmts) == 0 {
		return nil, errors.New("the query has no statement")
	}
	return stmts, nil
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
