package server

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/bothy/bothy/agent/wire"
	"golang.org/x/sys/unix"
)

// Watch bounds.
const (
	// watchLinger keeps a watch with no client alive this long, so that a
	// client that reconnects finds the events it missed.
	watchLinger = time.Minute
	maxWatches  = 8192 // directories one recursive watch follows
)

// eventSeq numbers every event of every watch of this agent, so a sequence
// number from one watch is never mistaken for another's.
var eventSeq atomic.Uint64

type watchKey struct {
	path      string
	recursive bool
}

// watchHub shares one inotify watch between the clients of the same path.
type watchHub struct {
	mu      sync.Mutex
	watches map[watchKey]*watch
	wg      sync.WaitGroup
}

func newWatchHub() *watchHub { return &watchHub{watches: map[watchKey]*watch{}} }

// close stops every watch and waits for them.
func (h *watchHub) close() {
	h.mu.Lock()
	for _, w := range h.watches {
		w.stop()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// watch is one inotify instance over a directory (tree).
type watch struct {
	hub  *watchHub
	key  watchKey
	file *os.File

	mu      sync.Mutex
	dirs    map[int32]string  // watch descriptor -> directory
	backlog []wire.WatchEvent // the last WatchBacklog events
	// known is the sequence number before which this watch cannot replay: it
	// started after it, or evicted the events up to it.
	known   uint64
	subs    map[chan wire.WatchEvent]struct{}
	idle    time.Time // when the last client left
	moving  map[uint32]wire.WatchEvent
	stopped bool
	done    chan struct{} // closed by stop
	// recent is the last event of each path in the last second, to fold the
	// same change reported twice (by inotify and by addNew's scan).
	recent map[string]wire.WatchEvent
}

// subscribe joins (or starts) the watch of key and returns the events after
// from, whether some were lost, and the live channel.
func (h *watchHub) subscribe(key watchKey, from uint64) (*watch, chan wire.WatchEvent, []wire.WatchEvent, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := h.watches[key]
	if !ok {
		var err error
		if w, err = h.start(key); err != nil {
			return nil, nil, nil, false, err
		}
		h.watches[key] = w
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan wire.WatchEvent, 1024)
	w.subs[ch] = struct{}{}
	var replay []wire.WatchEvent
	gap := false
	if from > 0 {
		gap = from < w.known
		for _, e := range w.backlog {
			if e.Seq > from {
				replay = append(replay, e)
			}
		}
	}
	return w, ch, replay, gap, nil
}

func (w *watch) unsubscribe(ch chan wire.WatchEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.subs[ch]; ok {
		delete(w.subs, ch)
		close(ch)
		if len(w.subs) == 0 {
			w.idle = time.Now()
		}
	}
}

func (h *watchHub) start(key watchKey) (*watch, error) {
	fi, err := os.Stat(key.path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, &wire.FsError{Code: wire.FsNotDir, Msg: key.path + " is not a directory"}
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &watch{hub: h, key: key, file: os.NewFile(uintptr(fd), "inotify"), dirs: map[int32]string{},
		subs: map[chan wire.WatchEvent]struct{}{}, moving: map[uint32]wire.WatchEvent{}, idle: time.Now(),
		recent: map[string]wire.WatchEvent{}, done: make(chan struct{}),
		known: eventSeq.Load()}
	if err := w.add(key.path); err != nil {
		w.file.Close()
		return nil, err
	}
	h.wg.Add(2)
	go func() { defer h.wg.Done(); w.read() }()
	go func() { defer h.wg.Done(); w.lingerLoop() }()
	return w, nil
}

const watchMask = unix.IN_CREATE | unix.IN_CLOSE_WRITE | unix.IN_MODIFY | unix.IN_DELETE |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_ONLYDIR

// add watches dir (and, for a recursive watch, every directory below it).
func (w *watch) add(dir string) error {
	addOne := func(d string) error {
		wd, err := unix.InotifyAddWatch(int(w.file.Fd()), d, watchMask)
		if err != nil {
			return err
		}
		w.mu.Lock()
		if len(w.dirs) < maxWatches {
			w.dirs[int32(wd)] = d
		}
		w.mu.Unlock()
		return nil
	}
	if !w.key.recursive {
		return addOne(dir)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil
		}
		if d.IsDir() {
			if err := addOne(p); err != nil && p == dir {
				return err
			}
		}
		return nil
	})
}

// read turns inotify records into events until the watch stops.
func (w *watch) read() {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(raw.Len)]
			name := strings.TrimRight(string(nameBytes), "\x00")
			off += unix.SizeofInotifyEvent + int(raw.Len)
			w.handle(raw, name)
		}
	}
}

func (w *watch) handle(raw *unix.InotifyEvent, name string) {
	w.mu.Lock()
	dir, ok := w.dirs[raw.Wd]
	w.mu.Unlock()
	if !ok {
		return
	}
	p := dir
	if name != "" {
		p = filepath.Join(dir, name)
	}
	isDir := raw.Mask&unix.IN_ISDIR != 0
	e := wire.WatchEvent{Path: p, IsDir: isDir, Time: time.Now().UTC()}
	switch {
	case raw.Mask&unix.IN_CREATE != 0:
		e.Type = "create"
		if isDir && w.key.recursive {
			w.addNew(p, e)
			return
		}
	case raw.Mask&(unix.IN_CLOSE_WRITE|unix.IN_MODIFY) != 0:
		e.Type = "write"
	case raw.Mask&unix.IN_DELETE != 0:
		e.Type = "remove"
	case raw.Mask&unix.IN_DELETE_SELF != 0:
		w.mu.Lock()
		delete(w.dirs, raw.Wd)
		w.mu.Unlock()
		return
	case raw.Mask&unix.IN_MOVED_FROM != 0:
		e.Type = "remove" // unless the matching MOVED_TO comes
		w.mu.Lock()
		w.moving[raw.Cookie] = e
		w.mu.Unlock()
		time.AfterFunc(50*time.Millisecond, func() {
			w.mu.Lock()
			pending, ok := w.moving[raw.Cookie]
			delete(w.moving, raw.Cookie)
			w.mu.Unlock()
			if ok {
				w.emit(pending)
			}
		})
		return
	case raw.Mask&unix.IN_MOVED_TO != 0:
		w.mu.Lock()
		from, ok := w.moving[raw.Cookie]
		delete(w.moving, raw.Cookie)
		w.mu.Unlock()
		e.Type = "create"
		if ok {
			e.Type, e.From = "rename", from.Path
		}
		if isDir && w.key.recursive {
			w.addNew(p, e)
			return
		}
	default:
		return
	}
	w.emit(e)
}

// addNew watches a directory that just appeared, then reports it (e), so that
// a client that has seen the directory's event knows that what happens in it
// from then on is seen; then it reports what was made in it before its watch
// existed (inotify cannot).
func (w *watch) addNew(dir string, e wire.WatchEvent) {
	err := w.add(dir)
	w.emit(e)
	if err != nil {
		return
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return nil
		}
		w.emit(wire.WatchEvent{Type: "create", Path: p, IsDir: d.IsDir(), Time: time.Now().UTC()})
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
			w.emit(wire.WatchEvent{Type: "write", Path: p, Time: time.Now().UTC()})
		}
		return nil
	})
}

// emit numbers an event, keeps it in the backlog and hands it to every client.
func (w *watch) emit(e wire.WatchEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Within a second of a path's last event, a create after a create or a
	// write (the path exists already), or a write after a write, reports
	// nothing new: inotify and addNew's scan may both see one change.
	if last, ok := w.recent[e.Path]; ok && e.Time.Sub(last.Time) < time.Second {
		if (e.Type == "create" && (last.Type == "create" || last.Type == "write")) || (e.Type == "write" && last.Type == "write") {
			return
		}
	}
	if len(w.recent) > wire.WatchBacklog {
		for p, r := range w.recent {
			if e.Time.Sub(r.Time) >= time.Second {
				delete(w.recent, p)
			}
		}
	}
	w.recent[e.Path] = e
	e.Seq = eventSeq.Add(1)
	w.backlog = append(w.backlog, e)
	if over := len(w.backlog) - wire.WatchBacklog; over > 0 {
		w.known = w.backlog[over-1].Seq
		w.backlog = append(w.backlog[:0:0], w.backlog[over:]...)
	}
	for ch := range w.subs {
		select {
		case ch <- e:
		default:
			// A client this far behind gets a gap and must resume from
			// its last sequence number.
			delete(w.subs, ch)
			close(ch)
		}
	}
}

// lingerLoop stops the watch once it has had no client for watchLinger.
func (w *watch) lingerLoop() {
	t := time.NewTicker(watchLinger / 4)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		w.mu.Lock()
		stopped := w.stopped
		done := len(w.subs) == 0 && time.Since(w.idle) > watchLinger
		w.mu.Unlock()
		if stopped {
			return
		}
		if done {
			w.hub.mu.Lock()
			if w.hub.watches[w.key] == w {
				delete(w.hub.watches, w.key)
			}
			w.hub.mu.Unlock()
			w.stop()
			return
		}
	}
}

// stop closes the inotify instance, ending read, and every client.
func (w *watch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.stopped = true
	close(w.done)
	w.file.Close()
	for ch := range w.subs {
		close(ch)
		delete(w.subs, ch)
	}
}

// serveWatch streams a watch's events on st until the client closes it.
func (s *Server) serveWatch(ctx context.Context, st net.Conn, out *wire.FrameSender, req *wire.WatchRequest) {
	if req == nil || wire.CheckPath(req.Path) != nil || !filepath.IsAbs(req.Path) {
		_ = out.SendJSON(wire.WatchEvent{Type: "error", Code: wire.FsInvalid, Error: "watch needs an absolute path"})
		return
	}
	key := watchKey{path: filepath.Clean(req.Path), recursive: req.Recursive}
	w, ch, replay, gap, err := s.watches.subscribe(key, req.From)
	if err != nil {
		r := fail(err)
		_ = out.SendJSON(wire.WatchEvent{Type: "error", Code: r.Code, Error: r.Error})
		return
	}
	defer w.unsubscribe(ch)
	if gap {
		_ = out.SendJSON(wire.WatchEvent{Type: "gap", Seq: req.From, Time: time.Now().UTC()})
	}
	last := req.From
	for _, e := range replay {
		if out.SendJSON(e) != nil {
			return
		}
		last = e.Seq
	}
	if out.SendJSON(wire.WatchEvent{Type: "ready", Seq: last, Time: time.Now().UTC()}) != nil {
		return
	}
	// The client's end of the stream: any read error means it left.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		var b [1]byte
		_, _ = st.Read(b[:])
	}()
	defer func() { _ = st.SetReadDeadline(time.Now()); <-gone }()
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				_ = out.SendJSON(wire.WatchEvent{Type: "gap", Seq: last, Time: time.Now().UTC()})
				return
			}
			if e.Seq <= last {
				continue // already replayed
			}
			if out.SendJSON(e) != nil {
				return
			}
			last = e.Seq
		case <-gone:
			return
		case <-ctx.Done():
			return
		}
	}
}
