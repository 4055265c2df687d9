package snapshot

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime/docker"
)

// The engine bothy wires in.
var _ interface {
	Engine
	Archiver
} = (*docker.Docker)(nil)

// TestMain fails the run when a test leaves a container, image or network of
// this suite's in the engine.
func TestMain(m *testing.M) { testenv.Main(m) }

// engineBed is where the package's engine tests start: the engine with
// bothy/busybox built, a database, and a configuration naming an instance
// and a scratch directory of the test's own.
func engineBed(t *testing.T) (*docker.Docker, *sql.DB, Config) {
	t.Helper()
	d := testenv.Docker(t)
	data := testenv.DataDir(t)
	sq, b := testenv.DB(t, data), images.New(d, testenv.Logger(t), "", filepath.Join(data, "build"))
	t.Cleanup(b.Close)
	if _, err := b.Ensure(context.Background(), images.Busybox, nil); err != nil {
		t.Fatal(err)
	}
	return d, sq, Config{Instance: "snaptest-" + filepath.Base(data), Scratch: filepath.Join(data, "tmp")}
}
