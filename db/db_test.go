package db

import (
	"context"
	"path/filepath"
	"testing"
)

func TestMigrateIsIncremental(t *testing.T) {
	ctx := context.Background()
	d, err := Open(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	steps := []string{`CREATE TABLE a (x INTEGER)`}
	if err := Migrate(ctx, d, "c", steps); err != nil {
		t.Fatal(err)
	}
	// Running again applies nothing (CREATE TABLE would fail if it did).
	steps = append(steps, `ALTER TABLE a ADD COLUMN y INTEGER`)
	if err := Migrate(ctx, d, "c", steps); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec(`INSERT INTO a (x, y) VALUES (1, 2)`); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := d.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q (%v)", mode, err)
	}
}
