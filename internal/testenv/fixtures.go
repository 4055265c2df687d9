package testenv

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/bothy/bothy/db"
)

// DB opens bothy's database in the data directory data, closed when the
// test ends.
func DB(t testing.TB, data string) *sql.DB {
	t.Helper()
	sq, err := db.Open(filepath.Join(data, "bothy.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	return sq
}
