package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/docker"
)

// suite tags everything this test process makes in the engine: the data
// directories DataDir makes, and so the instance labels derived from them,
// carry it.
var suite = func() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

// Instance is a bothy instance label of this suite's, named for what
// uses it.
func Instance(what string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return what + "-" + suite + "-" + hex.EncodeToString(b)
}

// Network names a bridge network of this suite's for sandboxes to join,
// and its host interface: the tests of one package share it, and Main
// removes it (and its host rules) after the last one.
func Network(what string) (name, bridge string) {
	return "bothy-" + what + "-" + suite, "sb" + what[:1] + suite
}

// Main runs the package's tests, runs cleanups (for what the package's own
// helpers made once for all its tests) and removes the agent binary built
// for them, removes the suite's networks, then fails the run when a
// container, image or network labelled by this suite is left in the
// engine: every test removes what it made. What is left is listed and
// removed.
func Main(m *testing.M, cleanups ...func()) {
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	if agentPath != "" {
		_ = os.RemoveAll(filepath.Dir(agentPath))
	}
	if testing.Short() {
		// -short runs (make test-unit) touch no engine, not even to sweep.
		os.Exit(code)
	}
	removeNetworks()
	if left := Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the tests left %d things labelled by this suite (%s) in the engine:\n  %s\n",
			len(left), suite, strings.Join(left, "\n  "))
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// removeNetworks removes the networks Network named for this suite.
func removeNetworks() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := docker.New(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return
	}
	defer d.Close()
	nets, _ := d.Networks(ctx, nil)
	for _, n := range nets {
		if strings.HasPrefix(n, "bothy-") && strings.HasSuffix(n, "-"+suite) {
			if err := d.RemoveNetwork(ctx, n); err != nil {
				fmt.Fprintf(os.Stderr, "remove the suite's network %s: %v\n", n, err)
			}
		}
	}
}

// Leftovers lists, and removes, what this suite's labels are on in the
// engine; nothing without an engine.
func Leftovers() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := docker.New(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil
	}
	defer d.Close()
	ours := func(labels map[string]string) bool { return strings.Contains(labels[runtime.LabelInstance], suite) }
	var left []string
	if cs, err := d.List(ctx, nil); err == nil {
		for _, c := range cs {
			if ours(c.Labels) {
				left = append(left, fmt.Sprintf("container %s (%s, %s, %v)", c.ID[:12], c.Name, c.State, c.Labels))
				_ = d.Remove(ctx, c.ID)
			}
		}
	}
	if imgs, err := d.ImagesLabelled(ctx, runtime.LabelInstance); err == nil {
		for _, img := range imgs {
			if ours(img.Labels) {
				left = append(left, fmt.Sprintf("image %s %v (%v)", img.ID, img.Tags, img.Labels))
				_ = d.ImageRemove(ctx, img.ID)
			}
		}
	}
	if nets, err := d.Networks(ctx, nil); err == nil {
		for _, n := range nets {
			if strings.Contains(n, suite) {
				left = append(left, "network "+n)
				_ = d.RemoveNetwork(ctx, n)
			}
		}
	}
	return left
}
