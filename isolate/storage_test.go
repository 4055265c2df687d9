package isolate

import (
	"strings"
	"testing"
)

func TestSplitSQL(t *testing.T) {
	ok := map[string]int{
		"SELECT 1":  1,
		"SELECT 1;": 1,
		"CREATE TABLE t (x); INSERT INTO t VALUES (1)":  2,
		"SELECT 'a;b', \"c;d\", [e;f], `g;h`; SELECT 2": 2,
		"SELECT 1 -- a comment; ATTACH\n":               1,
		"/* ATTACH 'x' AS y; */ SELECT 1":               1,
		"CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 1; DELETE FROM t WHERE x = CASE WHEN 1 THEN 2 END; END; SELECT 1": 2,
		"PRAGMA table_info(t)":                 1,
		"SELECT * FROM pragma_table_info('t')": 1,
		"WITH x AS (SELECT 1) SELECT * FROM x": 1,
	}
	for q, n := range ok {
		stmts, err := splitSQL(q)
		if err != nil || len(stmts) != n {
			t.Errorf("splitSQL(%q) = %d statements, %v; want %d", q, len(stmts), err, n)
		}
	}
	denied := []string{
		"ATTACH DATABASE '/tmp/x.db' AS x",
		"attach '/tmp/x.db' as x",
		"SELECT 1; ATTACH '/tmp/x.db' AS x",
		"/* hi */ ATTACH '/tmp/x.db' AS x",
		"DETACH x",
		"VACUUM INTO '/tmp/copy.db'",
		"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT a", "RELEASE a",
		"PRAGMA max_page_count = 100000000",
		"PRAGMA max_page_count(100000000)",
		"PRAGMA writable_schema = 1",
		"PRAGMA main.journal_mode = OFF",
		"PRAGMA table_info = 1",
		"SELECT * FROM pragma_database_list",
		"SELECT load_extension('x')",
		"SELECT 'unterminated",
		"/* unterminated",
		"",
		" ; ;",
	}
	for _, q := range denied {
		if _, err := splitSQL(q); err == nil {
			t.Errorf("splitSQL(%q) was allowed", q)
		}
	}
	if _, err := splitSQL("SELECT 'ATTACH', \"load_extension\""); err != nil {
		t.Errorf("words inside quotes are not statements: %v", err)
	}
}

func FuzzSplitSQL(f *testing.F) {
	for _, s := range []string{"SELECT 1; SELECT 2", "ATTACH 'x' AS y", "SELECT ';' -- ;\n; /* ; */ VACUUM"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		stmts, err := splitSQL(q)
		if err != nil {
			return
		}
		// Property: no allowed statement starts with a denied keyword.
		for _, s := range stmts {
			f := strings.Fields(strings.ToUpper(s))
			if len(f) > 0 {
				if _, bad := deniedStatements[f[0]]; bad {
					t.Fatalf("%q: statement %q was allowed", q, s)
				}
			}
		}
	})
}
