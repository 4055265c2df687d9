package snapshot

import (
	"archive/tar"
	"bytes"
	"slices"
	"testing"
)

// layer makes a layer tar of the named entries: a name ending in "/" is a
// directory, any other a file holding its own name.
func layer(t *testing.T, names ...string) tree {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(n))}
		if n[len(n)-1] == '/' {
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(n))
		}
	}
	tw.Close()
	tr := tree{}
	if err := tr.apply(&buf); err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestStackAppliesWhiteoutsAndOpaqueDirectories(t *testing.T) {
	base := layer(t, "etc/", "etc/a", "etc/b", "var/", "var/lib/", "var/lib/x")
	upper := stack([]tree{
		layer(t, "data/", "data/old", "data/keep"),
		layer(t, "data/.wh.old", "var/lib/", "var/lib/.wh..wh..opq", "var/lib/y"),
		layer(t, "data/new"),
	})
	state := func(p string) bool {
		if e, ok := upper[p]; ok {
			return !e.deleted
		}
		if upper.hidden(p) {
			return false
		}
		_, ok := base[p]
		return ok
	}
	for p, want := range map[string]bool{
		"/data/old": false, "/data/keep": true, "/data/new": true,
		"/var/lib/x": false, "/var/lib/y": true, "/etc/a": true,
	} {
		if got := state(p); got != want {
			t.Errorf("%s present = %v, want %v", p, got, want)
		}
	}
}

// TestImagePathsOfStackedLayers: the paths an image holds, for an agent's
// capture, are those of all its layers stacked, less what whiteouts and
// opaque directories took away; a path below an opaque directory of a layer
// that holds it is the image's.
func TestImagePathsOfStackedLayers(t *testing.T) {
	all := stack([]tree{
		layer(t, "etc/", "etc/a", "var/", "var/lib/", "var/lib/x", "data/", "data/old", "data/d/", "data/d/f"),
		layer(t, "data/.wh.old", "data/.wh.d", "var/lib/", "var/lib/.wh..wh..opq", "var/lib/y"),
	})
	var got []string
	for p := range all {
		if !all.gone(p) {
			got = append(got, p)
		}
	}
	slices.Sort(got)
	want := []string{"/data", "/etc", "/etc/a", "/var", "/var/lib", "/var/lib/y"}
	if !slices.Equal(got, want) {
		t.Errorf("paths %v, want %v", got, want)
	}
}

func TestTreeCacheEvictsTheLeastRecentlyUsed(t *testing.T) {
	c := newTreeCache(4)
	two := tree{"/a": {}, "/b": {}}
	c.put("l1", two)
	c.put("l2", two)
	if _, ok := c.get("l1"); !ok { // l1 is now the most recent
		t.Fatal("l1 missing")
	}
	c.put("l3", two)
	if _, ok := c.get("l2"); ok {
		t.Error("l2, the least recently used, was kept")
	}
	if _, ok := c.get("l1"); !ok {
		t.Error("l1 was evicted")
	}
	c.put("huge", tree{"/1": {}, "/2": {}, "/3": {}, "/4": {}, "/5": {}})
	if _, ok := c.get("huge"); ok {
		t.Error("a tree larger than the cache was cached")
	}
}
