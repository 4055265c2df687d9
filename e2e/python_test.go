package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bothy/bothy/internal/testenv"
)

// TestPythonClient installs clients/python with pip (offline: standard library
// only, built with the setuptools Python ships) and runs its unittest suite
// against a real bothy.
func TestPythonClient(t *testing.T) {
	testenv.Docker(t)
	py := installPython(t)
	const key = "e2e-python-key-0123456789abcdefg"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data, "BOTHY_ADMIN_KEY="+key)
	pythonSession(t, py, d.url, key)
}

// pythonClient is the Python client installed for a test.
type pythonClient struct{ python, site, src string }

// installPython installs the Python client for the test.
func installPython(t *testing.T) pythonClient {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is required")
	}
	// Install from a copy: a build leaves egg-info and build/ beside the
	// sources.
	src := filepath.Join(t.TempDir(), "python")
	if out, err := exec.Command("cp", "-r", "../clients/python", src).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v: %s", err, out)
	}
	site := t.TempDir()
	install := exec.Command(python, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps", "--no-index",
		"--disable-pip-version-check", "--target", site, src)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("pip install ./clients/python: %v\n%s", err, out)
	}
	return pythonClient{python, site, src}
}

// pythonSession runs the Python client's tests against the bothy at url,
// whose admin key is key.
func pythonSession(t *testing.T, py pythonClient, url, key string) {
	t.Helper()
	python, site, src := py.python, py.site, py.src

	cmd := exec.Command(python, "-m", "unittest", "discover", "-v", "-s", filepath.Join(src, "tests"))
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PYTHONPATH="+site, "BOTHY_URL="+url, "BOTHY_KEY="+key, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("the Python client's tests failed: %v", err)
	}
}
