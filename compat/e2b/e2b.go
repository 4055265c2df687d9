// Package e2b is bothy's E2B front door: E2B's control plane (REST/JSON,
// X-API-KEY) and the data plane of its in-sandbox daemon, envd (the Connect
// RPCs of process.Process and filesystem.Filesystem, and /files and /health),
// served over bothy's own domain calls, so that E2B's SDKs run unchanged
// against bothy (../../docs/e2b.md; the wire contract is
// ../shared/research/e2b-contract.md). It holds no logic of its own beyond
// translation: sandboxes, processes and files are bothy's, with the same
// owner checks and quotas.
package e2b

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"

	"github.com/bothy/bothy/bounds"
	"github.com/bothy/bothy/db"
	"github.com/bothy/bothy/fsapi"
	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/process"
	"github.com/bothy/bothy/shell"
	"github.com/bothy/bothy/supervisor"
)

// EnvdVersion is the envd version bothy reports: the SDK uses the
// features this version promises (e2b-contract.md, section 8), and no more.
const EnvdVersion = "0.5.7"

// Headers of the data plane.
const (
	headerSandboxID   = "E2b-Sandbox-Id"
	headerSandboxPort = "E2b-Sandbox-Port"
	headerAccessToken = "X-Access-Token"
	headerAPIKey      = "X-Api-Key"
	// envdPort is the in-sandbox port of envd, which the data plane serves.
	envdPort = "49983"
)

// Deps are the domain services the front door translates to.
type Deps struct {
	Orchestrator *orchestrator.Orchestrator
	Files        *fsapi.Service
	Processes    *process.Service
	Shell        *shell.Service
	Keys         *supervisor.Keys
	DB           *sql.DB
	Log          *slog.Logger
	// DefaultImage is the image of the "base" template.
	DefaultImage string
}

// Service serves both planes.
type Service struct {
	d       Deps
	log     *slog.Logger
	control http.Handler
	data    http.Handler
}

var migrations = []string{
	`CREATE TABLE e2b_tokens (
		sandbox_id TEXT PRIMARY KEY,
		token      TEXT NOT NULL)`,
	// A token goes with its sandbox, however the sandbox ends (a delete
	// through any front door, its lifetime, the idle reaper): those of
	// sandboxes already gone are dropped here.
	`CREATE TABLE e2b_tokens_new (
		sandbox_id TEXT PRIMARY KEY REFERENCES sandboxes (id) ON DELETE CASCADE,
		token      TEXT NOT NULL);
	INSERT INTO e2b_tokens_new SELECT t.sandbox_id, t.token FROM e2b_tokens t
		WHERE EXISTS (SELECT 1 FROM sandboxes s WHERE s.id = t.sandbox_id);
	DROP TABLE e2b_tokens;
	ALTER TABLE e2b_tokens_new RENAME TO e2b_tokens`,
}

// New migrates the front door's table (the sandboxes' data-plane tokens),
// after the orchestrator's: a token names its sandbox's row.
func New(ctx context.Context, d Deps) (*Service, error) {
	if err := db.Migrate(ctx, d.DB, "e2b", migrations); err != nil {
		return nil, err
	}
	s := &Service{d: d, log: d.Log.With("component", "e2b")}
	s.control = s.controlPlane()
	s.data = s.dataPlane()
	return s, nil
}

// Mounts are both planes as routes of bothy's one route table, under
// its bounds: the control plane's paths (/sandboxes..., /v2/sandboxes...)
// and envd's (/files, /health and the two Connect services) do not collide
// with bothy's own. Each plane authenticates itself (an X-API-KEY, or a
// sandbox's access token) and then enters the key's and the sandbox's caps.
func (s *Service) Mounts() []bounds.Mount {
	var out []bounds.Mount
	for _, p := range []string{"/sandboxes", "/v2/sandboxes", "/snapshots", "/templates", "/v2/templates", "/v3/templates"} {
		out = append(out, bounds.Mount{Path: p, Kind: bounds.KindJSON, Handler: s.control},
			bounds.Mount{Path: p + "/*", Kind: bounds.KindJSON, Handler: s.control})
	}
	// envd's requests name their sandbox in a header, whatever their path.
	return append(out,
		bounds.Mount{Header: headerSandboxID, Path: "/files", Kind: bounds.KindStream, Handler: s.data},
		bounds.Mount{Header: headerSandboxID, Kind: bounds.KindRPC, Body: 2 * maxRPCMessage, Handler: s.data})
}

// enter counts a request of key owner (and, when id is set, to sandbox id)
// against their caps in the request's bounds.
func enter(r *http.Request, owner, id string) error {
	sc, err := bounds.MustFrom(r.Context())
	if err != nil {
		return err
	}
	if err := sc.Key(owner); err != nil {
		return err
	}
	if id != "" {
		return sc.Sandbox(id)
	}
	return nil
}

// token answers sandbox id's data-plane token, minting it on first use.
func (s *Service) token(ctx context.Context, id string) (string, error) {
	var tok string
	err := s.d.DB.QueryRowContext(ctx, `SELECT token FROM e2b_tokens WHERE sandbox_id = ?`, id).Scan(&tok)
	if err == nil {
		return tok, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", err
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok = "e2bt_" + hex.EncodeToString(b)
	if _, err := s.d.DB.ExecContext(ctx, `INSERT INTO e2b_tokens (sandbox_id, token) VALUES (?, ?) ON CONFLICT (sandbox_id) DO NOTHING`, id, tok); err != nil {
		return "", err
	}
	// Another request may have minted one first: the stored one stands.
	err = s.d.DB.QueryRowContext(ctx, `SELECT token FROM e2b_tokens WHERE sandbox_id = ?`, id).Scan(&tok)
	return tok, err
}

// checkToken says given is sandbox id's data-plane token.
func (s *Service) checkToken(ctx context.Context, id, given string) bool {
	var tok string
	if given == "" || s.d.DB.QueryRowContext(ctx, `SELECT token FROM e2b_tokens WHERE sandbox_id = ?`, id).Scan(&tok) != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(given), []byte(tok)) == 1
}
