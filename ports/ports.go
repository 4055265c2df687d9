// Package ports reaches the servers that run inside sandboxes. A request to
// a sandbox's port goes through the sandbox's agent channel, which dials the
// port on the sandbox's own loopback: it works on bothy's isolated
// network, with no route from the host to the container and nothing
// published on the host. Exposed ports are recorded with a token of their
// own.
package ports

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/db"
	"github.com/bothy/bothy/internal/errclass"
	"github.com/bothy/bothy/orchestrator"
)

// ErrNotListening says nothing listens on the port asked for.
var ErrNotListening = errors.New("nothing listens on the port")

// Sandboxes finds a sandbox of an owner's and reaches its agent: the
// orchestrator.
type Sandboxes interface {
	Get(ctx context.Context, owner, id string) (orchestrator.Sandbox, error)
	Attach(ctx context.Context, owner, id string, fn func(ctx context.Context, sb orchestrator.Sandbox, conn *agent.Conn) error) error
	// OwnerOf names the owner of sandbox id, for requests a port's token
	// authorises instead of an API key.
	OwnerOf(ctx context.Context, id string) (string, error)
	// DialLoopback connects to port of running sandbox sb without its
	// agent (errors.ErrUnsupported where the runtime cannot).
	DialLoopback(ctx context.Context, sb orchestrator.Sandbox, port int) (net.Conn, error)
}

// Service proxies to sandboxes' ports and keeps their exposures.
type Service struct {
	sandboxes Sandboxes
	db        *sql.DB
	log       *slog.Logger
	// proxyLog takes what the reverse proxy notices on its own (a client
	// or server that went away mid-answer): the sandbox's business, debug.
	proxyLog *log.Logger
	pool     pool
}

var migrations = []string{
	`CREATE TABLE ports (
		sandbox_id TEXT NOT NULL, port INTEGER NOT NULL, public INTEGER NOT NULL,
		token TEXT NOT NULL, created_at INTEGER NOT NULL,
		PRIMARY KEY (sandbox_id, port))`,
}

// New migrates the exposures' table.
func New(ctx context.Context, sandboxes Sandboxes, d *sql.DB, log *slog.Logger) (*Service, error) {
	if err := db.Migrate(ctx, d, "ports", migrations); err != nil {
		return nil, err
	}
	l := log.With("component", "ports")
	return &Service{sandboxes: sandboxes, db: d, log: l, proxyLog: slog.NewLogLogger(l.Handler(), slog.LevelDebug)}, nil
}

// Port is an exposed port of a sandbox.
type Port struct {
	Port int
	// Public ports need no token.
	Public    bool
	Token     string
	CreatedAt time.Time
}

// CheckPort refuses what is not a TCP port number.
func CheckPort(port int) error {
	if port < 1 || port > 65535 {
		return cerrdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("port: want 1 to 65535, got %d", port))
	}
	return nil
}

// Expose records port of owner's sandbox id as exposed, with a new token.
func (s *Service) Expose(ctx context.Context, owner, id string, port int, public bool) (Port, error) {
	if err := CheckPort(port); err != nil {
		return Port{}, err
	}
	if _, err := s.sandboxes.Get(ctx, owner, id); err != nil {
		return Port{}, err
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	p := Port{Port: port, Public: public, Token: "pt_" + hex.EncodeToString(b), CreatedAt: time.Now().UTC()}
	res, err := s.db.ExecContext(ctx, `INSERT INTO ports (sandbox_id, port, public, token, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (sandbox_id, port) DO NOTHING`, id, port, public, p.Token, p.CreatedAt.UnixNano())
	if err != nil {
		return Port{}, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Port{}, cerrdefs.ErrAlreadyExists.WithMessage(fmt.Sprintf("port %d of sandbox %s is exposed already", port, id))
	}
	return p, nil
}

// List lists the exposed ports of owner's sandbox id.
func (s *Service) List(ctx context.Context, owner, id string) ([]Port, error) {
	if _, err := s.sandboxes.Get(ctx, owner, id); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT port, public, token, created_at FROM ports WHERE sandbox_id = ? ORDER BY port`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Port{}
	for rows.Next() {
		var p Port
		var created int64
		if err := rows.Scan(&p.Port, &p.Public, &p.Token, &created); err != nil {
			return nil, err
		}
		p.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// Exposure finds the exposure of port of sandbox id, whoever owns it, for a
// request that a port's token authorises: its owner and its record. A
// sandbox that does not exist and a port not exposed are both not found.
func (s *Service) Exposure(ctx context.Context, id string, port int) (string, Port, error) {
	notExposed := cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("port %d of sandbox %s is not exposed", port, id))
	if CheckPort(port) != nil {
		return "", Port{}, notExposed
	}
	owner, err := s.sandboxes.OwnerOf(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return "", Port{}, notExposed
	} else if err != nil {
		return "", Port{}, err
	}
	p := Port{Port: port}
	var created int64
	err = s.db.QueryRowContext(ctx, `SELECT public, token, created_at FROM ports WHERE sandbox_id = ? AND port = ?`, id, port).
		Scan(&p.Public, &p.Token, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return "", Port{}, notExposed
	} else if err != nil {
		return "", Port{}, err
	}
	p.CreatedAt = time.Unix(0, created).UTC()
	return owner, p, nil
}

// Unexpose forgets the exposure of port; its token stops working.
func (s *Service) Unexpose(ctx context.Context, owner, id string, port int) error {
	if err := CheckPort(port); err != nil {
		return err
	}
	if _, err := s.sandboxes.Get(ctx, owner, id); err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM ports WHERE sandbox_id = ? AND port = ?`, id, port)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("port %d of sandbox %s is not exposed", port, id))
	}
	return nil
}

// notListening is ErrNotListening for port of sandbox id.
func notListening(id string, port int) error {
	return errclass.New(fmt.Sprintf("nothing listens on port %d in sandbox %s", port, id), ErrNotListening)
}

// waitEvery is how often a wait tries the port.
const waitEvery = 100 * time.Millisecond

// wakeWait is how long a proxied request to a sandbox it woke (started or
// resumed) waits for the port, before it answers that nothing listens.
const wakeWait = 10 * time.Second

// Wait returns once something listens on port of owner's sandbox id, or
// fails with ErrNotListening when timeout passes first.
func (s *Service) Wait(ctx context.Context, owner, id string, port int, timeout time.Duration) error {
	if err := CheckPort(port); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	return s.sandboxes.Attach(ctx, owner, id, func(ctx context.Context, _ orchestrator.Sandbox, conn *agent.Conn) error {
		return waitListening(ctx, conn, id, port, deadline)
	})
}

// waitListening dials port through conn until something listens there or
// deadline passes.
func waitListening(ctx context.Context, conn *agent.Conn, id string, port int, deadline time.Time) error {
	t := time.NewTicker(waitEvery)
	defer t.Stop()
	for {
		c, err := conn.DialPort(ctx, port)
		if err == nil {
			c.Close()
			return nil
		}
		if !errors.Is(err, agent.ErrNotListening) {
			return err
		}
		if !time.Now().Before(deadline) {
			return notListening(id, port)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Proxy serves r from port of owner's sandbox id, at path (with r's query):
// HTTP/1.1 with streamed bodies both ways, and upgrades (WebSockets). The
// client's Authorization is not passed on; X-Forwarded-For, -Host and
// -Proto are set. Connections to the port are kept alive between requests.
// A stopped or paused sandbox is woken first, and then the port is waited
// for (wakeWait). When nothing listens the answer is left unwritten and
// ErrNotListening returned; an error after the answer began is only logged.
func (s *Service) Proxy(w http.ResponseWriter, r *http.Request, owner, id string, port int, path string) error {
	if err := CheckPort(port); err != nil {
		return err
	}
	return s.sandboxes.Attach(r.Context(), owner, id, func(ctx context.Context, sb orchestrator.Sandbox, conn *agent.Conn) error {
		if sb.Woken {
			if err := waitListening(ctx, conn, id, port, time.Now().Add(wakeWait)); err != nil {
				return err
			}
		}
		var proxyErr error
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "localhost:"+strconv.Itoa(port)
				pr.Out.URL.Path, pr.Out.URL.RawPath = path, ""
				pr.Out.Host = pr.Out.URL.Host
				pr.Out.Header.Del("Authorization")
				pr.SetXForwarded()
			},
			Transport: s.pool.transport(conn, port, func(ctx context.Context) (net.Conn, error) {
				return s.sandboxes.DialLoopback(ctx, sb, port)
			}),
			// The server may set cookies for its own host only, and none
			// of bothy's.
			ModifyResponse: func(resp *http.Response) error {
				filterCookies(resp.Header, r.Host)
				if b, ok := resp.Body.(*answerBody); ok && resp.ContentLength > 0 && !streamed(resp) {
					b.direct = w
				}
				return nil
			},
			// Streamed answers (SSE, and any of unknown length) are
			// flushed as they come; a sized one goes out in large writes.
			FlushInterval: 0,
			BufferPool:    copyBuffers{},
			// The caller writes the error, when nothing was sent yet.
			ErrorHandler: func(_ http.ResponseWriter, _ *http.Request, err error) { proxyErr = err },
			ErrorLog:     s.proxyLog,
		}
		rp.ServeHTTP(w, r.WithContext(ctx))
		if errors.Is(proxyErr, agent.ErrNotListening) {
			return notListening(id, port)
		}
		if errors.Is(proxyErr, ErrHeadTooLarge) {
			return fmt.Errorf("port %d of sandbox %s: %w", port, id, proxyErr)
		}
		if proxyErr != nil && ctx.Err() == nil {
			s.log.Debug("proxied request failed", "sandbox_id", id, "port", port, "err", proxyErr)
			return errclass.Wrap(cerrdefs.ErrUnavailable, proxyErr, fmt.Sprintf("the request to port %d of sandbox %s failed", port, id))
		}
		return nil
	})
}

// filterCookies drops from an answer's Set-Cookie fields the cookies a
// sandbox's server may not set: any with a Domain attribute other than
// host itself (which would reach the other hosts of the preview domain, or
// bothy's), and any with one of bothy's own names, however prefixed.
func filterCookies(h http.Header, host string) {
	set := h.Values("Set-Cookie")
	if len(set) == 0 {
		return
	}
	if hn, _, err := net.SplitHostPort(host); err == nil {
		host = hn
	}
	keep := set[:0:0]
	for _, line := range set {
		ck, err := http.ParseSetCookie(line)
		if err != nil || reservedCookie(ck.Name) {
			continue
		}
		if d := strings.TrimPrefix(strings.ToLower(ck.Domain), "."); d != "" && d != strings.ToLower(host) {
			continue
		}
		keep = append(keep, line)
	}
	h.Del("Set-Cookie")
	for _, line := range keep {
		h.Add("Set-Cookie", line)
	}
}

// reservedCookie says name is one of bothy's cookies (bothy_...,
// also behind the __Host- and __Secure- prefixes).
func reservedCookie(name string) bool {
	n := strings.ToLower(name)
	n = strings.TrimPrefix(strings.TrimPrefix(n, "__host-"), "__secure-")
	return strings.HasPrefix(n, "bothy")
}

// streamed says whether the proxy flushes resp's body as it comes: a
// stream of events is, whatever its length says.
func streamed(resp *http.Response) bool {
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return ct == "text/event-stream"
}
