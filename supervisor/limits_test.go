package supervisor

import (
	"errors"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

func TestLimits(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLimits(LimitsConfig{PerKey: Rate{PerSec: 10, Burst: 2}, PerApp: Rate{PerSec: 1, Burst: 1}, Concurrency: 3})
	l.now = func() time.Time { return now }

	// The key's burst of 2, then 429 until a token is back (1/10 s).
	for i := range 2 {
		release, err := l.Admit("k", "", Rate{})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		release()
	}
	_, err := l.Admit("k", "", Rate{})
	var le *LimitError
	if !errors.As(err, &le) || !cerrdefs.IsResourceExhausted(err) || le.RetryAfter() <= 0 || le.RetryAfter() > 100*time.Millisecond {
		t.Fatalf("third request: %v", err)
	}
	if _, err := l.Admit("other", "", Rate{}); err != nil {
		t.Fatalf("another key has its own bucket: %v", err)
	}
	now = now.Add(100 * time.Millisecond)

	// The app's own rate wins over the default; a refused app request
	// costs the key nothing.
	release, err := l.Admit("k", "app", Rate{PerSec: 0.5, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	release()
	now = now.Add(time.Second)
	if _, err := l.Admit("k", "app", Rate{PerSec: 0.5, Burst: 1}); !errors.As(err, &le) || le.RetryAfter() != time.Second {
		t.Fatalf("app at 0.5/s after 1 s: %v", err)
	}
	if release, err := l.Admit("k", "", Rate{}); err != nil {
		t.Fatalf("the key's bucket was charged for the refused app request: %v", err)
	} else {
		release()
	}

	// Concurrency: 3 in flight, the fourth refused until one ends.
	l = NewLimits(LimitsConfig{Concurrency: 3})
	var releases []func()
	for range 3 {
		r, err := l.Admit("k", "", Rate{})
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	if _, err := l.Admit("k", "", Rate{}); !errors.As(err, &le) {
		t.Fatalf("fourth in flight: %v", err)
	}
	releases[0]()
	releases[0]() // a second release is a no-op
	if _, err := l.Admit("k", "", Rate{}); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := l.Admit("k", "", Rate{}); err == nil {
		t.Fatal("the double release freed two slots")
	}
}
