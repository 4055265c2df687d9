package bounds

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

func TestBudgetSharesPerKeyAndInAll(t *testing.T) {
	ctx := context.Background()
	b := NewBudget(10, 6)
	got, relA, err := b.Reserve(ctx, "a", 100)
	if err != nil || got != 6 {
		t.Fatalf("a key asking for more than its share: %d %v", got, err)
	}
	// a holds its share: it waits; b still gets the rest of the budget.
	if _, ok := b.TryReserve("a", 1); ok {
		t.Fatal("a key got more than its share")
	}
	relB, ok := b.TryReserve("b", 4)
	if !ok {
		t.Fatal("another key did not get what is left")
	}
	if _, ok := b.TryReserve("c", 1); ok {
		t.Fatal("the budget gave out more than it has")
	}
	if b.Held() != 10 {
		t.Fatalf("held %d", b.Held())
	}
	done := make(chan int64)
	go func() {
		got, rel, err := b.Reserve(ctx, "c", 3)
		if err == nil {
			rel()
		}
		done <- got
	}()
	relA()
	relA() // twice is once
	if got := <-done; got != 3 {
		t.Fatalf("a waiting reserve got %d", got)
	}
	relB()
	if b.Held() != 0 || len(b.keys) != 0 {
		t.Fatalf("after every release: held %d, %d keys kept", b.Held(), len(b.keys))
	}
	// A reserve whose context ends while it waits gets nothing.
	_, rel, _ := b.Reserve(ctx, "a", 6)
	cctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if _, _, err := b.Reserve(cctx, "a", 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a reserve past its context: %v", err)
	}
	rel()
	if b.Held() != 0 {
		t.Fatalf("held %d after a failed reserve", b.Held())
	}
}

func TestGateCapsEachName(t *testing.T) {
	g := NewGate(2, "requests of this key")
	l1, _ := g.Enter("k")
	l2, _ := g.Enter("k")
	_, err := g.Enter("k")
	var be *BusyError
	if !errors.As(err, &be) || !cerrdefs.IsResourceExhausted(err) || be.RetryAfter() <= 0 {
		t.Fatalf("past the cap: %v", err)
	}
	if _, err := g.Enter("other"); err != nil {
		t.Fatalf("another name: %v", err)
	}
	l1()
	l1()
	if _, err := g.Enter("k"); err != nil {
		t.Fatalf("after one left: %v", err)
	}
	l2()
	if g.InFlight("k") != 1 {
		t.Fatalf("in flight %d", g.InFlight("k"))
	}
}

func TestScopeGivesBackWhatItHolds(t *testing.T) {
	b := New(Config{OutputBytes: 1 << 20, PerKey: 1, PerSandbox: 1, PerPort: 1})
	ctx := context.Background()
	sc := b.Begin(Class{Name: "json"})
	if err := sc.Key("k"); err != nil {
		t.Fatal(err)
	}
	if err := sc.Key("k"); err != nil {
		t.Fatalf("the same key twice: %v", err)
	}
	if err := sc.Sandbox("sb"); err != nil {
		t.Fatal(err)
	}
	if err := sc.Anonymous("sb", 80); err != nil {
		t.Fatal(err)
	}
	per, err := sc.ReserveStreams(ctx, 2, 1<<20)
	if err != nil || per != 1<<18 {
		t.Fatalf("2 streams of 1 MiB from a key's 512 KiB: %d %v", per, err)
	}
	other := b.Begin(Class{})
	if err := other.Key("k"); err == nil {
		t.Fatal("a second request of a key capped at one")
	}
	if err := other.Sandbox("sb"); err == nil {
		t.Fatal("a second request to a sandbox capped at one")
	}
	sc.End()
	if err := other.Key("k"); err != nil {
		t.Fatalf("after the first ended: %v", err)
	}
	other.End()
	if b.Output.Held() != 0 {
		t.Fatalf("output held after End: %d", b.Output.Held())
	}
	if _, err := MustFrom(ctx); !errors.Is(err, ErrNoScope) {
		t.Fatalf("no scope: %v", err)
	}
}

// A client that stops reading is cut once a write has waited WriteIdle,
// and the handler's write fails instead of blocking.
func TestWriterCutsAStalledClient(t *testing.T) {
	failed := make(chan error, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bw := NewWriter(w, 100*time.Millisecond)
		chunk := make([]byte, 64<<10)
		for {
			if _, err := bw.Write(chunk); err != nil {
				failed <- err
				return
			}
		}
	}))
	defer hs.Close()
	c, err := net.Dial("tcp", hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	// The client reads nothing more.
	select {
	case err := <-failed:
		if !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "timeout") && !errors.Is(err, http.ErrHandlerTimeout) {
			t.Logf("the write failed with %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the handler's write never failed")
	}
}

// A body read to its end leaves the connection without a read deadline
// (net/http clears it when it starts reading in the background to see the
// client leave): an answer that streams for longer than idle goes on.
func TestBodyDeadlineEndsWithTheBody(t *testing.T) {
	const idle = 50 * time.Millisecond
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(NewBody(w, r.Body, idle)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-r.Context().Done():
			http.Error(w, "the request ended while it was answered", http.StatusInternalServerError)
		case <-time.After(6 * idle):
			io.WriteString(w, "ok")
		}
	}))
	defer hs.Close()
	resp, err := http.Post(hs.URL, "text/plain", strings.NewReader("a body"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}
