package supervisor

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/db"
)

var migrations = []string{
	`CREATE TABLE api_keys (
		id         TEXT PRIMARY KEY,
		name       TEXT NOT NULL,
		hash       TEXT NOT NULL UNIQUE,
		admin      INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL,
		revoked_at INTEGER
	)`,
	`ALTER TABLE api_keys ADD COLUMN quota TEXT NOT NULL DEFAULT '{}'`,
}

// SecretPrefix starts every API key, so that a leaked one is recognisable.
const SecretPrefix = "bothy_"

// ErrUnauthenticated is returned for a missing, unknown or revoked key.
var ErrUnauthenticated = errors.New("unauthenticated")

// Key is an API key as stored: never its secret.
type Key struct {
	ID        string
	Name      string
	Admin     bool
	CreatedAt time.Time
	RevokedAt time.Time
	// OwnQuota is what was set for this key; Quota is what it is held to
	// (OwnQuota over the server's defaults).
	OwnQuota Quota
	Quota    Quota
}

// Keys stores API keys.
type Keys struct {
	db *sql.DB

	// cache holds keys recently authenticated, by secret hash, for
	// keyCacheTTL: every request authenticates, and a database query costs
	// more than the rest of a fast request. Revoke empties it.
	mu       sync.Mutex
	cache    map[string]cachedKey
	defaults Quota
}

type cachedKey struct {
	key     Key
	expires time.Time
}

// keyCacheTTL bounds how long a key revoked by another process stays usable
// here; a revoke through this process takes effect at once.
const (
	keyCacheTTL  = 5 * time.Second
	keyCacheSize = 10000
)

// NewKeys migrates the key table.
func NewKeys(ctx context.Context, d *sql.DB) (*Keys, error) {
	if err := db.Migrate(ctx, d, "supervisor", migrations); err != nil {
		return nil, err
	}
	return &Keys{db: d, cache: map[string]cachedKey{}}, nil
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}

// Bootstrap makes sure an admin key exists. With secret set (from
// BOTHY_ADMIN_KEY) that key is the admin key. Otherwise, when no admin key
// exists yet, one is generated and its secret returned, to be shown once; when
// one exists, nothing happens and "" is returned.
func (k *Keys) Bootstrap(ctx context.Context, secret string) (string, error) {
	if secret != "" {
		if len(secret) < 16 {
			return "", cerrdefs.ErrInvalidArgument.WithMessage("BOTHY_ADMIN_KEY must be at least 16 characters")
		}
		_, err := k.db.ExecContext(ctx, `INSERT INTO api_keys (id, name, hash, admin, created_at) VALUES (?, 'admin', ?, 1, ?)
			ON CONFLICT (hash) DO UPDATE SET admin = 1, revoked_at = NULL`,
			"key_"+randomHex(6), hashSecret(secret), time.Now().UnixNano())
		if err != nil {
			return "", fmt.Errorf("bootstrap admin key: %w", err)
		}
		return "", nil
	}
	var n int
	if err := k.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_keys WHERE admin = 1 AND revoked_at IS NULL`).Scan(&n); err != nil {
		return "", fmt.Errorf("bootstrap admin key: %w", err)
	}
	if n > 0 {
		return "", nil
	}
	_, secret, err := k.Create(ctx, "admin", true)
	return secret, err
}

// Create makes a key and returns it with its secret, which is not stored.
func (k *Keys) Create(ctx context.Context, name string, admin bool) (Key, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return Key{}, "", cerrdefs.ErrInvalidArgument.WithMessage("name: must be 1 to 100 characters")
	}
	key := Key{ID: "key_" + randomHex(6), Name: name, Admin: admin, CreatedAt: time.Now()}
	secret := SecretPrefix + randomHex(20)
	_, err := k.db.ExecContext(ctx, `INSERT INTO api_keys (id, name, hash, admin, created_at) VALUES (?, ?, ?, ?, ?)`,
		key.ID, key.Name, hashSecret(secret), admin, key.CreatedAt.UnixNano())
	if err != nil {
		return Key{}, "", fmt.Errorf("create key: %w", err)
	}
	return key, secret, nil
}

// List returns every key, revoked ones included, oldest first.
func (k *Keys) List(ctx context.Context) ([]Key, error) {
	rows, err := k.db.QueryContext(ctx, `SELECT id, name, admin, created_at, revoked_at, quota FROM api_keys ORDER BY created_at`)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	var out []Key
	for rows.Next() {
		key, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		k.effective(&key)
		out = append(out, key)
	}
	return out, rows.Err()
}

// Revoke revokes a key; it stops working at once.
func (k *Keys) Revoke(ctx context.Context, id string) error {
	res, err := k.db.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, time.Now().UnixNano(), id)
	k.mu.Lock()
	clear(k.cache)
	k.mu.Unlock()
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("key %s not found", id))
	}
	return nil
}

// Get returns the live key id.
func (k *Keys) Get(ctx context.Context, id string) (Key, error) {
	row := k.db.QueryRowContext(ctx, `SELECT id, name, admin, created_at, revoked_at, quota FROM api_keys WHERE id = ? AND revoked_at IS NULL`, id)
	key, err := scanKey(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Key{}, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("key %s not found", id))
	}
	k.effective(&key)
	return key, err
}

// Authenticate returns the live key whose secret this is.
func (k *Keys) Authenticate(ctx context.Context, secret string) (Key, error) {
	if !strings.HasPrefix(secret, SecretPrefix) && len(secret) < 16 {
		return Key{}, ErrUnauthenticated
	}
	hash := hashSecret(secret)
	now := time.Now()
	k.mu.Lock()
	c, ok := k.cache[hash]
	k.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.key, nil
	}
	row := k.db.QueryRowContext(ctx, `SELECT id, name, admin, created_at, revoked_at, quota FROM api_keys WHERE hash = ? AND revoked_at IS NULL`, hash)
	key, err := scanKey(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Key{}, ErrUnauthenticated
	}
	if err != nil {
		return Key{}, err
	}
	k.effective(&key)
	k.mu.Lock()
	if len(k.cache) >= keyCacheSize {
		clear(k.cache)
	}
	k.cache[hash] = cachedKey{key: key, expires: now.Add(keyCacheTTL)}
	k.mu.Unlock()
	return key, nil
}

type scanner interface{ Scan(...any) error }

func scanKey(r scanner) (Key, error) {
	var key Key
	var created int64
	var revoked sql.NullInt64
	var quota string
	if err := r.Scan(&key.ID, &key.Name, &key.Admin, &created, &revoked, &quota); err != nil {
		return Key{}, err
	}
	if err := json.Unmarshal([]byte(quota), &key.OwnQuota); err != nil {
		return Key{}, fmt.Errorf("key %s: quota: %w", key.ID, err)
	}
	key.CreatedAt = time.Unix(0, created)
	if revoked.Valid {
		key.RevokedAt = time.Unix(0, revoked.Int64)
	}
	return key, nil
}

type keyInContext struct{}

// WithKey returns ctx carrying the authenticated key k, for a front door
// that another one authenticated.
func WithKey(ctx context.Context, k Key) context.Context {
	return context.WithValue(ctx, keyInContext{}, k)
}

// KeyFrom is the key WithKey put in ctx.
func KeyFrom(ctx context.Context) (Key, bool) {
	k, ok := ctx.Value(keyInContext{}).(Key)
	return k, ok
}
