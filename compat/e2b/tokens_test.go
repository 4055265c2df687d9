package e2b

import (
	"context"
	"testing"

	"github.com/bothy/bothy/db"
	"github.com/bothy/bothy/internal/testenv"
)

// TestTokensGoWithTheirSandboxes: a sandbox's data-plane token lasts as
// long as its row, whichever way the sandbox is deleted, and the migration
// that ties them drops the tokens of sandboxes already gone.
func TestTokensGoWithTheirSandboxes(t *testing.T) {
	ctx := context.Background()
	d := testenv.DB(t, t.TempDir())
	// The orchestrator's table, as far as tokens care, and a database from
	// before the tie: one token of a live sandbox, one of a deleted one.
	for _, q := range []string{
		`CREATE TABLE sandboxes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE)`,
		`INSERT INTO sandboxes (id) VALUES ('sb-live'), ('sb-other')`,
	} {
		if _, err := d.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Migrate(ctx, d, "e2b", migrations[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ExecContext(ctx, `INSERT INTO e2b_tokens VALUES ('sb-live', 'tok-live'), ('sb-gone', 'tok-gone')`); err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, Deps{DB: d, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var n int
		if err := d.QueryRowContext(ctx, `SELECT COUNT(*) FROM e2b_tokens`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 1 || !s.checkToken(ctx, "sb-live", "tok-live") || s.checkToken(ctx, "sb-gone", "tok-gone") {
		t.Fatalf("after the migration: %d tokens", n)
	}
	tok, err := s.token(ctx, "sb-other")
	if err != nil || !s.checkToken(ctx, "sb-other", tok) {
		t.Fatalf("mint: %q %v", tok, err)
	}
	if _, err := s.token(ctx, "sb-never"); err == nil {
		t.Fatal("a token was minted for a sandbox that does not exist")
	}
	// Deleted by any front door, or by its lifetime: its row goes, and the
	// token with it.
	if _, err := d.ExecContext(ctx, `DELETE FROM sandboxes WHERE id IN ('sb-live', 'sb-other')`); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 || s.checkToken(ctx, "sb-other", tok) {
		t.Fatalf("after the deletes: %d tokens", n)
	}
}
