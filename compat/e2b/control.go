package e2b

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/supervisor"
)

// Control-plane limits and defaults.
const (
	// defaultTimeout is a sandbox's lifetime when a create names none, in
	// seconds (E2B's default).
	defaultTimeout = 300
	// maxTimeout caps a timeout: 24 h, as E2B's largest plan.
	maxTimeout = 24 * 3600
	// maxControlBody bounds a control-plane request body.
	maxControlBody = 1 << 20
	// defaultUser and defaultWorkdir are where an E2B sandbox's commands
	// run unless they say otherwise, as on E2B.
	defaultUser    = "user"
	defaultWorkdir = "/home/user"
	// baseTemplate is E2B's default template, bothy's default image.
	baseTemplate = "base"
	// clientID fills E2B's deprecated clientID, still required by its schema.
	clientID = "bothy"
)

// apiError is a control-plane error: E2B's {"code": status, "message"}.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{Code: status, Message: msg})
}

// statusOf maps a domain error's class to the status E2B would answer.
func statusOf(err error) int {
	switch {
	case cerrdefs.IsNotFound(err):
		return http.StatusNotFound
	case cerrdefs.IsInvalidArgument(err):
		return http.StatusBadRequest
	case cerrdefs.IsConflict(err), cerrdefs.IsAlreadyExists(err), cerrdefs.IsFailedPrecondition(err):
		return http.StatusConflict
	case cerrdefs.IsPermissionDenied(err):
		return http.StatusForbidden
	case cerrdefs.IsResourceExhausted(err):
		return http.StatusTooManyRequests
	case cerrdefs.IsUnavailable(err), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail writes err as E2B's error body; the message of an internal error
// stays in the log.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		s.log.Error("e2b control plane", "path", r.URL.Path, "err", err)
		msg = "internal error"
	}
	writeError(w, status, msg)
}

// keyed authenticates a control-plane request by its X-API-KEY.
func (s *Service) keyed(fn func(w http.ResponseWriter, r *http.Request, key supervisor.Key)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secret := strings.TrimSpace(r.Header.Get(headerAPIKey))
		if secret == "" {
			writeError(w, http.StatusUnauthorized, "missing API key: send the header X-API-KEY (E2B_API_KEY) with a bothy key")
			return
		}
		key, err := s.d.Keys.Authenticate(r.Context(), secret)
		if errors.Is(err, supervisor.ErrUnauthenticated) {
			writeError(w, http.StatusUnauthorized, "invalid or revoked API key")
			return
		} else if err != nil {
			s.fail(w, r, err)
			return
		}
		if err := enter(r, key.ID, ""); err != nil {
			s.fail(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxControlBody)
		fn(w, r, key)
	}
}

func (s *Service) controlPlane() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/sandboxes", s.keyed(s.create))
	mux.HandleFunc("GET /v2/sandboxes", s.keyed(s.list))
	mux.HandleFunc("GET /sandboxes", s.keyed(s.list))
	mux.HandleFunc("POST /v2/sandboxes/{id}/connect", s.keyed(s.connect))
	mux.HandleFunc("POST /sandboxes/{id}/connect", s.keyed(s.connect))
	mux.HandleFunc("POST /sandboxes/{id}/resume", s.keyed(s.connect))
	mux.HandleFunc("GET /sandboxes/{id}", s.keyed(s.get))
	mux.HandleFunc("DELETE /sandboxes/{id}", s.keyed(s.kill))
	mux.HandleFunc("POST /sandboxes/{id}/timeout", s.keyed(s.setTimeout))
	mux.HandleFunc("POST /sandboxes/{id}/pause", s.keyed(s.pause))
	mux.HandleFunc("GET /sandboxes/{id}/metrics", s.keyed(s.metrics))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "bothy does not serve "+r.Method+" "+r.URL.Path+" of E2B's API (docs/e2b.md)")
	})
	return mux
}

// newSandbox is E2B's NewSandboxV2; unknown fields are ignored, as E2B does.
type newSandbox struct {
	TemplateID          string            `json:"templateID"`
	Timeout             *int64            `json:"timeout"`
	Metadata            map[string]string `json:"metadata"`
	EnvVars             map[string]string `json:"envVars"`
	AllowInternetAccess *bool             `json:"allow_internet_access"`
}

// sandboxJSON is E2B's Sandbox (create, connect) and, with its details,
// the detail form (E2B names it Sandbox + Detail) and ListedSandbox.
type sandboxJSON struct {
	SandboxID       string            `json:"sandboxID"`
	TemplateID      string            `json:"templateID"`
	Alias           string            `json:"alias,omitempty"`
	ClientID        string            `json:"clientID"`
	EnvdVersion     string            `json:"envdVersion"`
	EnvdAccessToken string            `json:"envdAccessToken,omitempty"`
	Domain          *string           `json:"domain"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	State           string            `json:"state,omitempty"`
	StartedAt       *time.Time        `json:"startedAt,omitempty"`
	EndAt           *time.Time        `json:"endAt,omitempty"`
	CPUCount        float64           `json:"cpuCount,omitempty"`
	MemoryMB        int64             `json:"memoryMB,omitempty"`
	DiskSizeMB      int64             `json:"diskSizeMB,omitempty"`
}

// imageOf maps an E2B template to a bothy image: "base" is the default
// image, and any other name is an image name.
func (s *Service) imageOf(template string) string {
	if template == "" || template == baseTemplate {
		return s.d.DefaultImage
	}
	return template
}

// templateOf is the reverse of imageOf, for answers.
func (s *Service) templateOf(image string) (id, alias string) {
	if image == s.d.DefaultImage || image == s.d.DefaultImage+":latest" {
		return baseTemplate, baseTemplate
	}
	return image, ""
}

// timeoutOf checks a timeout in seconds.
func timeoutOf(t *int64) (int64, error) {
	if t == nil {
		return defaultTimeout, nil
	}
	if *t < 1 || *t > maxTimeout {
		return 0, cerrdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("timeout: want 1 to %d seconds, got %d", maxTimeout, *t))
	}
	return *t, nil
}

func (s *Service) create(w http.ResponseWriter, r *http.Request, key supervisor.Key) {
	var req newSandbox
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "the body is not a JSON NewSandbox: "+err.Error())
		return
	}
	timeout, err := timeoutOf(req.Timeout)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	opts := orchestrator.CreateOptions{
		Image: s.imageOf(req.TemplateID), Env: req.EnvVars, Labels: req.Metadata, TTLSeconds: &timeout,
		User: defaultUser, Workdir: defaultWorkdir,
	}
	if req.AllowInternetAccess != nil && !*req.AllowInternetAccess {
		opts.Network = "none"
	}
	sb, _, err := s.d.Orchestrator.Create(r.Context(), key.ID, opts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	tok, err := s.token(r.Context(), sb.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := s.toJSON(sb, false)
	out.TemplateID, out.EnvdAccessToken = req.TemplateID, tok
	if out.TemplateID == "" {
		out.TemplateID = baseTemplate
	}
	writeJSON(w, http.StatusCreated, out)
}

// toJSON is sb as E2B describes a sandbox; details adds state, times and
// limits.
func (s *Service) toJSON(sb orchestrator.Sandbox, details bool) sandboxJSON {
	tmpl, alias := s.templateOf(sb.Image)
	out := sandboxJSON{SandboxID: sb.ID, TemplateID: tmpl, Alias: alias, ClientID: clientID, EnvdVersion: EnvdVersion}
	if !details {
		return out
	}
	out.Metadata = sb.Labels
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	out.State = stateOf(sb.State)
	started := sb.CreatedAt.UTC()
	out.StartedAt = &started
	if end := sb.ExpiresAt(); !end.IsZero() {
		end = end.UTC()
		out.EndAt = &end
	}
	out.CPUCount, out.MemoryMB, out.DiskSizeMB = sb.Spec.CPUs, sb.Spec.MemoryMB, sb.Spec.DiskMB
	return out
}

// stateOf names a sandbox's state as E2B does: running, or paused for
// anything that a connect brings back (paused and stopped).
func stateOf(st orchestrator.State) string {
	if st == orchestrator.StateRunning {
		return "running"
	}
	return "paused"
}

func (s *Service) get(w http.ResponseWriter, r *http.Request, key supervisor.Key) {
	sb, err := s.d.Orchestrator.Get(r.Context(), key.ID, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := s.toJSON(sb, true)
	if out.EnvdAccessToken, err = s.token(r.Context(), sb.ID); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Service) kill(w http.ResponseWriter, r *http.Request, key supervisor.Key) {
	id := r.PathValue("id")
	if err := s.d.Orchestrator.Delete(r.Context(), key.ID, id); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// extend sets sandbox id's end to now + seconds, or only moves it later when
// later is set (a connect never shortens a lifetime).
func (s *Service) extend(ctx context.Context, owner string, sb orchestrator.Sandbox, seconds int64, later bool) error {
	end := time.Now().Add(time.Duration(seconds) * time.Second)
	if cur := sb.ExpiresAt(); later && (cur.IsZero() || cur.After(end)) {
		return nil
	}
	ttl := int64(math.Ceil(end.Sub(sb.CreatedAt).Seconds()))
	_, err := s.d.Orchestrator.Update(ctx, owner, sb.ID, orchestrator.UpdateOptions{TTLSeconds: &ttl})
	return err
}

func (s *Service) connect(w http.ResponseWriter, r *http.Request, key supervisor.Key) {
	var req struct {
		Timeout *int64 `json:"timeout"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "the body is not JSON: "+err.Error())
		return
	}
	timeout, err := timeoutOf(req.Timeout)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, id := r.Context(), r.PathValue("id")
	// E2B answers 201 for a sandbox it had to resume, 200 for a running one.
	sb, err := s.d.Orchestrator.Wake(ctx, key.ID, id)
	status := http.StatusOK
	if sb.Woken {
		status = http.StatusCreated
	}
	if err == nil {
		err = s.extend(ctx, key.ID, sb, timeout, true)
	}
	var tok string
	if err == nil {
		tok, err = s.token(ctx, id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := s.toJSON(sb, false)
	out.EnvdAccessToken = tok
	writeJSON(w, status, out)
}

func (s *Service) setTimeout(w http.ResponseWriter, r *http.Request, key supervisor.Key) {
	var req struct {
		Timeout *int64 `json:"timeout"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Timeout == nil {
		writeError(w, http.StatusBadRequest, `want {"timeout": seconds}`)
		return
	}
	timeout, err := timeoutOf(req.Timeout)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sb, err := s.d.Orchestrator.Get(r.Context(), key.ID, r.PathValue("id"))
	if err == nil {
		err = s.extend(r.Context(), key.ID, sb, timeout, false)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) pause(w http.ResponseWriter, r *http.Request, key supervisor.Key) {
	ctx, id := r.Context(), r.PathValue("id")
	sb, err := s.d.Orchestrator.Get(ctx, key.ID, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if sb.State != orchestrator.StateRunning {
		writeError(w, http.StatusConflict, "sandbox "+id+" is "+string(sb.State)+", not running")
		return
	}
	_, err = s.d.Orchestrator.Pause(ctx, key.ID, id)
	if cerrdefs.IsNotImplemented(err) {
		// The runtime cannot freeze a sandbox (a pod cannot be paused):
		// E2B's pause keeps its files, as a stop does, and its resume
		// starts it again.
		_, err = s.d.Orchestrator.Stop(ctx, key.ID, id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// metricsWindow is how long the CPU is watched for a metrics sample.
const metricsWindow = 250 * time.Millisecond

// metric is E2B's SandboxMetric.
type metric struct {
	Timestamp     time.Time `json:"timestamp"`
	TimestampUnix int64     `json:"timestampUnix"`
	CPUCount      float64   `json:"cpuCount"`
	CPUUsedPct    float64   `json:"cpuUsedPct"`
	MemUsed       int64     `json:"memUsed"`
	MemTotal      int64     `json:"memTotal"`
	MemCache      int64     `json:"memCache"`
	DiskUsed      int64     `json:"diskUsed"`
	DiskTotal     int64     `json:"diskTotal"`
}

// metrics answers one sample of the sandbox's use, taken now: bothy
// keeps no time series, so ?start= and ?end= select nothing more. The CPU
// share is measured over metricsWindow, of the sandbox's CPU limit.
func (s *Service) metrics(w http.ResponseWriter, r *http.Request, key supervisor.Key) {
	ctx, id := r.Context(), r.PathValue("id")
	sb, err := s.d.Orchestrator.Get(ctx, key.ID, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if sb.State != orchestrator.StateRunning {
		writeJSON(w, http.StatusOK, []metric{})
		return
	}
	first, err := s.d.Orchestrator.Stats(ctx, key.ID, id)
	t0 := time.Now()
	if err == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(metricsWindow):
		}
	}
	var last orchestrator.Stats
	if err == nil {
		last, err = s.d.Orchestrator.Stats(ctx, key.ID, id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	now := time.Now().UTC()
	cpus := sb.Spec.CPUs
	m := metric{Timestamp: now, TimestampUnix: now.Unix(), CPUCount: cpus, MemUsed: last.MemUsed, MemCache: last.MemCache,
		MemTotal: last.MemLimit, DiskTotal: sb.Spec.DiskMB << 20}
	if elapsed := now.Sub(t0); elapsed > 0 && cpus > 0 {
		m.CPUUsedPct = math.Round(float64(last.CPUTime-first.CPUTime)/float64(elapsed)/cpus*10000) / 100
	}
	writeJSON(w, http.StatusOK, []metric{m})
}

// listPage is the most sandboxes one list answer holds.
const listPage = 100

// list answers the key's sandboxes that match ?metadata= (all pairs) and
// ?state= (running, paused; both when absent), oldest first, a page at a
// time: X-Next-Token names the next page. (Killed sandboxes are gone.)
func (s *Service) list(w http.ResponseWriter, r *http.Request, key supervisor.Key) {
	q := r.URL.Query()
	limit := listPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > listPage {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: want 1 to %d", listPage))
			return
		}
		limit = n
	}
	var after int64
	if v := q.Get("nextToken"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "nextToken: not a token this server gave")
			return
		}
		after = n
	}
	labels, err := metadataFilter(q.Get("metadata"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	states := map[string]bool{}
	for _, st := range strings.Split(q.Get("state"), ",") {
		switch st {
		case "":
		case "running", "paused":
			states[st] = true
		default:
			writeError(w, http.StatusBadRequest, "state: want running or paused, got "+strconv.Quote(st))
			return
		}
	}
	// One page of the key's sandboxes; those of another state are left out,
	// so a page may hold fewer than limit and still have a next one.
	page, next, err := s.d.Orchestrator.List(r.Context(), key.ID, orchestrator.ListFilter{Labels: labels, After: after, Limit: limit})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []sandboxJSON{}
	for _, sb := range page {
		if len(states) == 0 || states[stateOf(sb.State)] {
			out = append(out, s.toJSON(sb, true))
		}
	}
	if next != 0 {
		w.Header().Set("X-Next-Token", strconv.FormatInt(next, 10))
	}
	writeJSON(w, http.StatusOK, out)
}

// metadataFilter decodes the SDK's ?metadata=: a query string of escaped
// keys and values, sent as one value (so escaped once more).
func metadataFilter(v string) (map[string]string, error) {
	if v == "" {
		return nil, nil
	}
	pairs, err := url.ParseQuery(v)
	if err != nil {
		return nil, fmt.Errorf("metadata: %v", err)
	}
	out := map[string]string{}
	for k, vs := range pairs {
		key, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(vs[0])
		if err1 != nil || err2 != nil {
			return nil, errors.New("metadata: not escaped as the SDK escapes it")
		}
		out[key] = val
	}
	return out, nil
}
