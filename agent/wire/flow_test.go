package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// streamPair opens one yamux stream between two sessions over a pipe and
// returns its two raw ends.
func streamPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	ca, err := yamux.Client(a, YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	sb, err := yamux.Server(b, YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close(); sb.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		st, err := sb.Accept()
		if err == nil {
			accepted <- st
		}
		close(accepted)
	}()
	st, err := ca.OpenStream() // announced at once (SYN)
	if err != nil {
		t.Fatal(err)
	}
	return st, <-accepted
}

// flowPair is streamPair with a flow at each end; grow budgets the first.
func flowPair(t *testing.T, grow func(int64) (func(), bool)) (*Flow, *Flow) {
	t.Helper()
	a, b := streamPair(t)
	fa, fb := NewFlow(a, grow), NewFlow(b, nil)
	t.Cleanup(func() { fa.Close(); fb.Close() })
	return fa, fb
}

func TestFlowCarriesBulkBothWaysAndGrows(t *testing.T) {
	fa, fb := flowPair(t, nil)
	data := make([]byte, 8<<20)
	rand.Read(data)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := fb.Write(data); err != nil {
			t.Error(err)
		}
		fb.Close()
	}()
	got, err := io.ReadAll(fa)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d of %d bytes: %v", len(got), len(data), err)
	}
	wg.Wait()
	fa.mu.Lock()
	w := fa.window
	fa.mu.Unlock()
	if w <= flowInitial {
		t.Fatalf("a reader that kept up left its window at %d", w)
	}
	// The other way, after b has ended its side: a's data is still taken,
	// and b's grants still reach a.
	go func() {
		fa.Write(data)
		fa.Close()
	}()
	got, err = io.ReadAll(fb)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after a half-close: read %d of %d bytes: %v", len(got), len(data), err)
	}
}

// A reader that stops reading holds its window and no more: the sender
// waits for credit, and a refused budget keeps the window where it was.
func TestFlowStalledReaderHoldsItsWindow(t *testing.T) {
	var reserved atomic.Int64
	grow := func(n int64) (func(), bool) {
		if reserved.Load()+n > 64<<10 {
			return nil, false
		}
		reserved.Add(n)
		return func() { reserved.Add(-n) }, true
	}
	fa, fb := flowPair(t, grow)
	var sent atomic.Int64
	go func() {
		chunk := make([]byte, 4<<10)
		for {
			n, err := fb.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	// The sender stops at the window, and says it waits for credit.
	waitFor(t, func() bool {
		fb.mu.Lock()
		defer fb.mu.Unlock()
		return fb.starveSent && fb.credit == 0
	})
	if s := sent.Load(); s > flowInitial {
		t.Fatalf("sent %d bytes to a reader that read none; window %d", s, flowInitial)
	}
	// Draining grows the window, but never past what grow allows.
	buf := make([]byte, 32<<10)
	for range 200 {
		if _, err := fa.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	fa.mu.Lock()
	w := fa.window
	fa.mu.Unlock()
	if w > flowInitial+64<<10 || reserved.Load() > 64<<10 || reserved.Load() == 0 {
		t.Fatalf("window %d, reserved %d, over a budget of 64 KiB", w, reserved.Load())
	}
	fa.Close()
	if reserved.Load() != 0 {
		t.Fatalf("%d bytes of window still reserved after Close", reserved.Load())
	}
}

func TestFlowDeadlines(t *testing.T) {
	fa, fb := flowPair(t, nil)
	fa.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := fa.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v", err)
	}
	// A write waiting for credit ends at its deadline.
	fb.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := fb.Write(make([]byte, 4*flowInitial))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != flowInitial {
		t.Fatalf("write past its credit and deadline: %d %v", n, err)
	}
	// A deadline moved to now wakes a waiting read.
	fa.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	fb2, fa2 := flowPair(t, nil)
	_ = fa2
	go func() {
		_, err := fb2.Read(make([]byte, 1))
		done <- err
	}()
	fb2.SetReadDeadline(time.Now())
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a read woken by its deadline: %v", err)
	}
}

// A peer that sends more than it was granted is cut.
func TestFlowCutsAPeerPastItsCredit(t *testing.T) {
	a, b := streamPair(t)
	fa := NewFlow(a, nil)
	defer fa.Close()
	hdr := make([]byte, recHeader)
	hdr[0] = recData
	binary.BigEndian.PutUint32(hdr[1:], flowInitial+1)
	go func() {
		b.Write(hdr)
		b.Write(make([]byte, flowInitial+1))
	}()
	if _, err := io.ReadAll(fa); !errors.Is(err, errFlow) {
		t.Fatalf("a record past the window: %v", err)
	}
	fa.mu.Lock()
	held := cap(fa.buf)
	fa.mu.Unlock()
	if held > 0 {
		t.Fatalf("a refused record left %d bytes allocated", held)
	}
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in a minute")
		}
	}
}
