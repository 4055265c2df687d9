package isolate

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// sqlCall runs one storage call of kind with query in t, as an app's host
// would send it, and returns the reply.
func sqlCall(t *testing.T, tx *txn, call, query string, params ...any) storageResult {
	t.Helper()
	msg, _ := json.Marshal(map[string]any{"op": "storage", "id": 1, "call": call, "query": query, "params": params})
	var res storageResult
	if err := json.Unmarshal(tx.handle(context.Background(), msg), &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func openTestDB(t *testing.T) *appDB {
	t.Helper()
	d, err := openAppDB(context.Background(), filepath.Join(t.TempDir(), "app.db"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d
}

func begin(t *testing.T, d *appDB) *txn {
	t.Helper()
	tx, err := d.conn.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d.policy.rolledBack.Store(false)
	return &txn{db: d, tx: tx}
}

// TestStoragePolicy: SQLite's authorizer, not a reading of the text, decides
// what an app's SQL may do, however it is spelled or quoted.
func TestStoragePolicy(t *testing.T) {
	d := openTestDB(t)
	tx := begin(t, d)
	defer tx.tx.Rollback()
	// In order: the first makes the table the others use.
	allowed := []string{
		"CREATE TABLE t (x); INSERT INTO t VALUES (1); SELECT x FROM t",
		`SELECT 'ATTACH', "x" FROM t WHERE x = 1 -- ; ATTACH`,
		"CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = CASE WHEN 1 THEN 2 END WHERE x = 0; END",
		"PRAGMA table_info(t)",
		"SELECT * FROM pragma_table_info('t')",
		"SELECT name FROM sqlite_master",
		"WITH y AS (SELECT 1) SELECT * FROM y",
	}
	for _, q := range allowed {
		if res := sqlCall(t, tx, "sql", q); res.Error != "" {
			t.Errorf("%q refused: %s", q, res.Error)
		}
	}
	denied := map[string]string{
		"pragma_database_list":       "SELECT * FROM pragma_database_list",
		"quoted pragma function":     `SELECT * FROM "pragma_database_list"`,
		"bracketed pragma function":  "SELECT * FROM [pragma_database_list]",
		"backticked pragma function": "SELECT * FROM `pragma_database_list`",
		"pragma function in a join":  "SELECT * FROM t, pragma_database_list",
		"attach":                     "ATTACH DATABASE '/tmp/x.db' AS x",
		"attach after a statement":   "SELECT 1; ATTACH '/tmp/x.db' AS x",
		"attach in a comment trick":  "/* */ ATTACH '/tmp/x.db' AS x",
		"detach":                     "DETACH main",
		"vacuum into":                "VACUUM INTO '/tmp/copy.db'",
		"begin":                      "BEGIN",
		"commit":                     "COMMIT",
		"end":                        "END",
		"rollback":                   "ROLLBACK",
		"savepoint":                  "SAVEPOINT a",
		"release":                    "RELEASE a",
		"max_page_count":             "PRAGMA max_page_count = 100000000",
		"max_page_count call":        "PRAGMA max_page_count(100000000)",
		"writable_schema":            "PRAGMA writable_schema = 1",
		"journal_mode":               "PRAGMA main.journal_mode = OFF",
		"database_list":              "PRAGMA database_list",
		"load_extension":             "SELECT load_extension('x')",
		"empty":                      " ",
	}
	for name, q := range denied {
		res := sqlCall(t, tx, "sql", q)
		if res.Error == "" {
			t.Errorf("%s: %q was allowed: %+v", name, q, res)
		}
		if strings.Contains(res.Error, "/tmp/") || strings.Contains(res.Error, "app.db") {
			t.Errorf("%s: the error names a path: %s", name, res.Error)
		}
	}
	if res := sqlCall(t, tx, "sql", "SELECT x FROM t"); res.Error != "" || len(res.Rows) != 1 {
		t.Fatalf("after the refusals: %+v", res)
	}
}

// TestStatementThatRollsBackTheInvoke: a trigger's RAISE(ROLLBACK) caught by
// the app, then another write: the transaction ended under the invoke, so
// every later call fails and nothing the invoke wrote is kept.
func TestStatementThatRollsBackTheInvoke(t *testing.T) {
	d := openTestDB(t)
	tx := begin(t, d)
	for _, q := range []string{
		"CREATE TABLE t (x)",
		"CREATE TRIGGER no_two BEFORE INSERT ON t WHEN NEW.x = 2 BEGIN SELECT RAISE(ROLLBACK, 'no twos'); END",
	} {
		if res := sqlCall(t, tx, "sql", q); res.Error != "" {
			t.Fatal(res.Error)
		}
	}
	if err := tx.tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, roll := range []string{"INSERT INTO t VALUES (2)", "CREATE TABLE u (y UNIQUE); INSERT INTO u VALUES (1); INSERT OR ROLLBACK INTO u VALUES (1)"} {
		tx = begin(t, d)
		if res := sqlCall(t, tx, "sql", "INSERT INTO t VALUES (1)"); res.Error != "" {
			t.Fatal(res.Error)
		}
		if res := sqlCall(t, tx, "sql", roll); res.Error == "" {
			t.Fatalf("%q: no error", roll)
		}
		if tx.broken == "" {
			t.Fatalf("%q: the invoke's transaction is not marked broken", roll)
		}
		// The app caught the error and writes again.
		if res := sqlCall(t, tx, "sql", "INSERT INTO t VALUES (3)"); res.Error == "" {
			t.Fatalf("%q: a write after the rollback was accepted", roll)
		}
		if res := sqlCall(t, tx, "put", ""); res.Error == "" {
			t.Fatalf("%q: a put after the rollback was accepted", roll)
		}
		_ = tx.tx.Rollback()
		var n int
		if err := d.conn.QueryRowContext(context.Background(), "SELECT count(*) FROM t").Scan(&n); err != nil || n != 0 {
			t.Fatalf("%q: %d rows kept (%v)", roll, n, err)
		}
	}
}
