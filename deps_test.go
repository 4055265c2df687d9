package sandboxd_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sandboxd/sandboxd"

// layer ranks the module's packages: a package may import only packages of a
// lower layer (the dependency direction of docs/ARCHITECTURE.md). api is a leaf.
var layer = map[string]int{
	"api":               0,
	"db":                1,
	"runtime":           1,
	"agent":             1,
	"images":            2,
	"supervisor":        2,
	"orchestrator":      2,
	"runtime/docker":    2,
	"shell":             2,
	"snapshot":          2,
	"isolate":           2,
	"web":               2,
	"server":            3,
	"cmd/sandboxd":      4,
	"cmd/sbx":           4,
	"cmd/sandbox-agent": 4,
}

// only these packages may import these outside modules.
var exclusive = map[string][]string{
	"github.com/moby/moby":       {"runtime/docker"},
	"github.com/labstack/echo":   {"server"},
	"github.com/hashicorp/yamux": {"agent"},
}

func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(strings.TrimPrefix(f[0], module), "/")
		from, ranked := layer[pkg]
		if !ranked && pkg != "" && pkg != "e2e" && pkg != "bench" && !strings.HasPrefix(pkg, "internal/") {
			t.Errorf("package %s has no layer: add it to deps_test.go", pkg)
		}
		for _, imp := range f[1:] {
			for prefix, owners := range exclusive {
				if strings.HasPrefix(imp, prefix) && !contains(owners, pkg) {
					t.Errorf("%s imports %s; only %v may", pkg, imp, owners)
				}
			}
			if !ranked || !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(imp, module+"/")
			to, ok := layer[dep]
			if !ok {
				if !strings.HasPrefix(dep, "internal/") {
					t.Errorf("%s imports %s, which has no layer: add it to deps_test.go", pkg, dep)
				}
				continue
			}
			if to >= from {
				t.Errorf("%s (layer %d) imports %s (layer %d): dependencies point down only", pkg, from, dep, to)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
