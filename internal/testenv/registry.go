package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Registry starts Debian's docker-registry on a loopback port of its own,
// with storage in a temporary directory, and returns its HOST:PORT (the
// engine pushes to and pulls from loopback registries over plain HTTP). It
// stops with the test. Without the binary the test is skipped, or failed
// where the engine is required (make test installs it: scripts/engine.sh).
func Registry(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("docker-registry"); err != nil {
		if os.Getenv("CI") != "" || os.Getenv("BOTHY_REQUIRE_DOCKER") != "" {
			t.Fatalf("docker-registry required (scripts/engine.sh installs it): %v", err)
		}
		t.Skipf("no docker-registry: %v", err)
	}
	addr, stop, err := StartRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}

// StartRegistry starts Debian's docker-registry on a free loopback port,
// storing in dir, and waits (30 s at most) until it answers; stop ends it.
func StartRegistry(dir string) (addr string, stop func(), err error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	ln.Close()
	config := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(config, fmt.Appendf(nil, `version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), addr), 0o644); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "serve", config)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-done
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr, stop, nil
			}
		}
		select {
		case <-done:
			return "", nil, errors.New("docker-registry exited")
		case <-ctx.Done():
			stop()
			return "", nil, errors.New("docker-registry did not answer within 30 s")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// RegistryTags lists the tags the registry at addr holds of repository.
func RegistryTags(t testing.TB, addr, repository string) []string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v2/" + repository + "/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Tags []string `json:"tags"`
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Tags
}
