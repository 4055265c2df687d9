package bounds

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"
)

// Config sets the server-wide bounds.
type Config struct {
	// OutputBytes is the budget of output held for answers not streamed
	// (commands' and runs' output, tool results); a key holds at most half.
	OutputBytes int64
	// BodyBytes is the budget of request bodies read whole; a key holds at
	// most a quarter.
	BodyBytes int64
	// WindowBytes is the budget of what streams from sandboxes' agents hold
	// past their first few KiB: windows grown for readers that keep up (a
	// sandbox's agent sends ahead up to a stream's window), and their copy
	// buffers. A key holds at most WindowPerKey of it.
	WindowBytes int64
	// PerKey, PerSandbox and PerPort cap the requests in flight of one key,
	// of one sandbox (whoever sends them), and sent anonymously to one
	// sandbox's public port.
	PerKey, PerSandbox, PerPort int
	// WriteIdle is how long a write to a client may wait before the client
	// is cut; ReadIdle likewise for a read of a request's body.
	WriteIdle, ReadIdle time.Duration
}

// Defaults of Config's fields left zero.
const (
	DefaultOutputBytes = 128 << 20
	DefaultBodyBytes   = 128 << 20
	DefaultWindowBytes = 64 << 20
	// WindowPerKey is what one key's streams may hold past their first
	// window, together: one stream's worth of a window that runs at a few
	// hundred MB/s on a local channel, spread over all of them when many
	// stall at once. It trades a bulk stream's speed against what stalled
	// ones hold (BENCHMARKS.md: at 4 MiB the port proxy's download gains
	// little more and 128 stalled readers hold up to 81 KiB each, over the
	// 64 KiB they may; at 1 MiB they hold 22-57 KiB).
	WindowPerKey      = 1 << 20
	DefaultPerKey     = 256
	DefaultPerSandbox = 256
	DefaultPerPort    = 64
	DefaultWriteIdle  = 30 * time.Second
	DefaultReadIdle   = 60 * time.Second
)

// Bounds is the server-wide state every front door shares.
type Bounds struct {
	cfg    Config
	Output *Budget
	Bodies *Budget
	// Windows is what the streams from sandboxes' agents may hold beyond
	// their first window.
	Windows *Budget
	keys    *Gate
	boxes   *Gate
	ports   *Gate
}

// New makes the bounds of a server, defaulting what cfg leaves zero.
func New(cfg Config) *Bounds {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.OutputBytes, DefaultOutputBytes)
	def(&cfg.BodyBytes, DefaultBodyBytes)
	def(&cfg.WindowBytes, DefaultWindowBytes)
	defInt(&cfg.PerKey, DefaultPerKey)
	defInt(&cfg.PerSandbox, DefaultPerSandbox)
	defInt(&cfg.PerPort, DefaultPerPort)
	if cfg.WriteIdle <= 0 {
		cfg.WriteIdle = DefaultWriteIdle
	}
	if cfg.ReadIdle <= 0 {
		cfg.ReadIdle = DefaultReadIdle
	}
	return &Bounds{
		cfg:     cfg,
		Output:  NewBudget(cfg.OutputBytes, cfg.OutputBytes/2),
		Bodies:  NewBudget(cfg.BodyBytes, cfg.BodyBytes/4),
		Windows: NewBudget(cfg.WindowBytes, min(cfg.WindowBytes, WindowPerKey)),
		keys:    NewGate(cfg.PerKey, "requests of this key"),
		boxes:   NewGate(cfg.PerSandbox, "requests to this sandbox"),
		ports:   NewGate(cfg.PerPort, "anonymous requests to this port"),
	}
}

// Config is the configuration in force, defaults applied.
func (b *Bounds) Config() Config { return b.cfg }

// Scope is what one request holds. It is made by the route's middleware
// and ended when the request is; front doors add to it as they learn who
// sends the request and what it reaches.
type Scope struct {
	b     *Bounds
	Class Class

	mu      sync.Mutex
	key     string
	boxes   map[string]bool
	release []func()
	ended   bool
}

// Begin opens the scope of a request of class.
func (b *Bounds) Begin(class Class) *Scope { return &Scope{b: b, Class: class} }

// End gives back everything the scope holds.
func (s *Scope) End() {
	s.mu.Lock()
	rel := s.release
	s.release, s.ended = nil, true
	s.mu.Unlock()
	for i := len(rel) - 1; i >= 0; i-- {
		rel[i]()
	}
}

// hold keeps release for End (running it at once if the scope has ended).
func (s *Scope) hold(release func()) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		release()
		return
	}
	s.release = append(s.release, release)
	s.mu.Unlock()
}

// Key says which API key sends the request: it enters that key's cap.
// A second call for the same key does nothing.
func (s *Scope) Key(id string) error {
	s.mu.Lock()
	if s.key == id {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	leave, err := s.b.keys.Enter(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.key = id
	s.mu.Unlock()
	s.hold(leave)
	return nil
}

// KeyID is the key Key named, or "" for an anonymous request.
func (s *Scope) KeyID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}

// Sandbox says the request reaches sandbox id: it enters that sandbox's
// cap, once per request.
func (s *Scope) Sandbox(id string) error {
	s.mu.Lock()
	if s.boxes[id] {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	leave, err := s.b.boxes.Enter(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.boxes == nil {
		s.boxes = map[string]bool{}
	}
	s.boxes[id] = true
	s.mu.Unlock()
	s.hold(leave)
	return nil
}

// Anonymous says the request reaches port of sandbox id without a key: it
// enters that port's cap of anonymous requests.
func (s *Scope) Anonymous(id string, port int) error {
	leave, err := s.b.ports.Enter(id + ":" + strconv.Itoa(port))
	if err != nil {
		return err
	}
	s.hold(leave)
	return nil
}

// ReserveOutput waits for n bytes of the output budget for this request's
// key and returns what it got (n, or less when that is more than a key may
// hold); they are given back when the request ends.
func (s *Scope) ReserveOutput(ctx context.Context, n int64) (int64, error) {
	return s.reserve(ctx, s.b.Output, n)
}

// ReserveStreams reserves output for n streams of up to perStream bytes
// each (a command's stdout and stderr) and returns the cap each stream gets:
// perStream, or less when the key may not hold that much at once.
func (s *Scope) ReserveStreams(ctx context.Context, n int, perStream int64) (int64, error) {
	got, err := s.ReserveOutput(ctx, int64(n)*perStream)
	return got / int64(n), err
}

// ReserveBody is ReserveOutput from the budget of bodies read whole.
func (s *Scope) ReserveBody(ctx context.Context, n int64) (int64, error) {
	return s.reserve(ctx, s.b.Bodies, n)
}

func (s *Scope) reserve(ctx context.Context, b *Budget, n int64) (int64, error) {
	got, release, err := b.Reserve(ctx, s.KeyID(), n)
	if err != nil {
		return 0, err
	}
	s.hold(release)
	return got, nil
}

// GrowWindow reserves n more bytes of stream window for the request's key,
// without waiting: false when its share (or the budget) is spent.
func (s *Scope) GrowWindow(n int64) (func(), bool) {
	return s.b.Windows.TryReserve(s.KeyID(), n)
}

// WriteIdle is how long a write to the client may wait.
func (s *Scope) WriteIdle() time.Duration { return s.b.cfg.WriteIdle }

// ReadIdle is how long a read of the body may wait.
func (s *Scope) ReadIdle() time.Duration { return s.b.cfg.ReadIdle }

type scopeKey struct{}

// With returns ctx carrying s.
func With(ctx context.Context, s *Scope) context.Context {
	return context.WithValue(ctx, scopeKey{}, s)
}

// ErrNoScope is a call that needs a request's scope made outside one: a
// route registered without its class.
var ErrNoScope = errors.New("bounds: no request scope (a route without a class)")

// From is the scope ctx carries, or nil.
func From(ctx context.Context) *Scope {
	s, _ := ctx.Value(scopeKey{}).(*Scope)
	return s
}

// MustFrom is the scope ctx carries, or ErrNoScope.
func MustFrom(ctx context.Context) (*Scope, error) {
	if s := From(ctx); s != nil {
		return s, nil
	}
	return nil, ErrNoScope
}
