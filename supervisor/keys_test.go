package supervisor

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/bothy/bothy/db"
)

func TestKeys(t *testing.T) {
	ctx := context.Background()
	d, err := db.Open(filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	k, err := NewKeys(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := k.Bootstrap(ctx, "")
	if err != nil || admin == "" {
		t.Fatalf("bootstrap: %q %v", admin, err)
	}
	if again, _ := k.Bootstrap(ctx, ""); again != "" {
		t.Fatal("a second admin key was generated")
	}
	got, err := k.Authenticate(ctx, admin)
	if err != nil || !got.Admin {
		t.Fatalf("admin auth: %+v %v", got, err)
	}
	user, secret, err := k.Create(ctx, "ci", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Authenticate(ctx, secret+"x"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("wrong secret: %v", err)
	}
	// Only the hash is stored.
	var n int
	_ = d.QueryRow(`SELECT COUNT(*) FROM api_keys WHERE hash = ?`, secret).Scan(&n)
	if n != 0 {
		t.Fatal("secret stored in clear")
	}
	if err := k.Revoke(ctx, user.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked key works: %v", err)
	}
	if _, err := k.Bootstrap(ctx, "short"); err == nil {
		t.Fatal("accepted a short admin key")
	}
	if _, err := k.Bootstrap(ctx, "env-admin-key-0123456789"); err != nil {
		t.Fatal(err)
	}
	if got, err := k.Authenticate(ctx, "env-admin-key-0123456789"); err != nil || !got.Admin {
		t.Fatalf("env admin: %v", err)
	}
}
