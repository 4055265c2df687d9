package bothy_test

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/bothy/bothy"

// allowList is the intended graph, read from docs/dependencies.txt: the
// module's packages each package may import, and the packages that alone may
// import an outside module.
type allowList struct {
	arrows    map[string]map[string]bool
	exclusive map[string][]string
}

func readAllowList(t *testing.T, path string) allowList {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := allowList{arrows: map[string]map[string]bool{}, exclusive: map[string][]string{}}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		from, to, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("%s:%d: want \"pkg: deps...\", got %q", path, n, line)
		}
		if ext, ok := strings.CutPrefix(from, "!"); ok {
			a.exclusive[ext] = strings.Fields(to)
			continue
		}
		if _, dup := a.arrows[from]; dup {
			t.Fatalf("%s:%d: %s is listed twice", path, n, from)
		}
		a.arrows[from] = map[string]bool{}
		for _, d := range strings.Fields(to) {
			a.arrows[from][d] = true
		}
	}
	return a
}

// violations checks graph (package -> its imports, full paths) against a.
func (a allowList) violations(graph map[string][]string) []string {
	var out []string
	for full, imports := range graph {
		pkg := strings.TrimPrefix(strings.TrimPrefix(full, module), "/")
		if pkg == "" {
			continue // the module root holds only this test
		}
		allowed, listed := a.arrows[pkg]
		if !listed {
			out = append(out, "package "+pkg+" is not in docs/dependencies.txt")
		}
		for _, imp := range imports {
			for prefix, owners := range a.exclusive {
				if strings.HasPrefix(imp, prefix) && !contains(owners, pkg) {
					out = append(out, pkg+" imports "+imp+"; only "+strings.Join(owners, ", ")+" may")
				}
			}
			dep, ours := strings.CutPrefix(imp, module+"/")
			if ours && listed && !allowed[dep] {
				out = append(out, pkg+" -> "+dep+" is not an allowed arrow")
			}
		}
	}
	for pkg := range a.arrows {
		if _, ok := graph[module+"/"+pkg]; !ok {
			out = append(out, "docs/dependencies.txt lists "+pkg+", which does not exist")
		}
	}
	return out
}

func importGraph(t *testing.T) map[string][]string {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatal(err)
	}
	g := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		g[f[0]] = f[1:]
	}
	return g
}

func TestDependencyGraphIsTheIntendedOne(t *testing.T) {
	for _, v := range readAllowList(t, "docs/dependencies.txt").violations(importGraph(t)) {
		t.Error(v)
	}
}

// TestAnArrowNotInTheListFails adds an arrow the design forbids (server ->
// agent) to the real graph and checks that it is caught.
func TestAnArrowNotInTheListFails(t *testing.T) {
	a := readAllowList(t, "docs/dependencies.txt")
	g := importGraph(t)
	if v := a.violations(g); len(v) > 0 {
		t.Skip("the real graph already fails")
	}
	g[module+"/server"] = append(g[module+"/server"], module+"/agent")
	v := a.violations(g)
	if len(v) != 1 || v[0] != "server -> agent is not an allowed arrow" {
		t.Fatalf("violations = %q, want the server -> agent arrow", v)
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
