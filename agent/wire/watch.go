package wire

import (
	"time"
)

// Watch bounds.
const (
	// WatchBacklog is how many recent events a watch keeps for clients that
	// reconnect with a sequence number.
	WatchBacklog = 4096
)

// WatchRequest opens a stream of file events under Path.
type WatchRequest struct {
	Path      string `json:"path"`
	Recursive bool   `json:"recursive,omitempty"`
	// From resumes after this sequence number: the events since are replayed
	// from the backlog, or a "gap" event says they are gone.
	From uint64 `json:"from,omitempty"`
}

// WatchEvent is one file event. Types: create, write, remove, rename; and on
// the stream: ready (the watch is live; replay is over) and gap (events after
// From were dropped).
type WatchEvent struct {
	Seq   uint64    `json:"seq"`
	Type  string    `json:"type"`
	Path  string    `json:"path,omitempty"`
	From  string    `json:"from,omitempty"`
	IsDir bool      `json:"is_dir,omitempty"`
	Time  time.Time `json:"time"`
	// Code and Error describe a watch that could not start (type "error").
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}
