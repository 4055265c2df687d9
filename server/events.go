package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/labstack/echo/v5"
)

// eventStream writes a stream of JSON events: one per line (NDJSON), or as
// server-sent events when the client accepts text/event-stream. The answer's
// header goes out with the first event, so an error before it still gets the
// ordinary error envelope. Safe for several goroutines.
type eventStream struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	sse     bool
	started bool
}

func newEventStream(c *echo.Context) *eventStream {
	return &eventStream{w: c.Response(), sse: strings.Contains(c.Request().Header.Get("Accept"), "text/event-stream")}
}

// send writes v as one event, with id and name for server-sent events, and
// flushes it.
func (s *eventStream) send(id any, name string, v any) error {
	b, _ := json.Marshal(v)
	return s.sendJSON(id, name, b)
}

// sendJSON writes b, a JSON value, as one event (b may be appended to).
func (s *eventStream) sendJSON(id any, name string, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		ct := "application/x-ndjson"
		if s.sse {
			ct = "text/event-stream"
		}
		s.w.Header().Set("Content-Type", ct)
		s.w.Header().Set("Cache-Control", "no-store")
		s.w.WriteHeader(http.StatusOK)
		s.started = true
	}
	var err error
	if s.sse {
		// The event's head, then its data: no copy of the data is made.
		if _, err = fmt.Fprintf(s.w, "id: %v\nevent: %s\ndata: ", id, name); err == nil {
			_, err = s.w.Write(append(b, "\n\n"...))
		}
	} else {
		_, err = s.w.Write(append(b, '\n'))
	}
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
	return err
}

// begun says an event went out: the answer is committed.
func (s *eventStream) begun() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}
