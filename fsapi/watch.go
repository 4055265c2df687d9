package fsapi

import (
	"context"
	"time"

	"github.com/bothy/bothy/agent/wire"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/orchestrator"
)

// Event types. Beside the changes (create, write, remove, rename), a watch's
// stream carries ready (the watch is live; any replay is over) and gap
// (events after the From asked for were dropped).
const (
	EventCreate = "create"
	EventWrite  = "write"
	EventRemove = "remove"
	EventRename = "rename"
	EventReady  = "ready"
	EventGap    = "gap"
)

// Event is one file event.
type Event struct {
	Seq  uint64
	Type string
	Path string
	// From is where a renamed file was.
	From  string
	IsDir bool
	Time  time.Time
}

// WatchOptions selects what a watch reports.
type WatchOptions struct {
	Path      string
	Recursive bool
	// From resumes after an event already seen: the events since are
	// replayed, or a gap event says they are gone.
	From uint64
}

// Watch streams the events under o.Path to fn until ctx is done, fn returns
// an error (which Watch returns), or the sandbox stops.
func (s *Service) Watch(ctx context.Context, t Target, o WatchOptions, fn func(Event) error) error {
	if err := CheckPath("path", o.Path); err != nil {
		return err
	}
	return s.sandboxes.Attach(ctx, t.Owner, t.Sandbox, func(ctx context.Context, _ orchestrator.Sandbox, conn *agent.Conn) error {
		err := conn.Watch(ctx, wire.WatchRequest{Path: o.Path, Recursive: o.Recursive, From: o.From}, func(e wire.WatchEvent) error {
			return fn(Event{Seq: e.Seq, Type: e.Type, Path: e.Path, From: e.From, IsDir: e.IsDir, Time: e.Time})
		})
		return classify(err)
	})
}
