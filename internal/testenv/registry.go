package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/bothy/bothy/internal/testcert"
	"golang.org/x/crypto/bcrypt"
)

// Registry starts Debian's docker-registry on a loopback port of its own,
// with storage in a temporary directory, and returns its HOST:PORT (the
// engine pushes to and pulls from loopback registries over plain HTTP). It
// stops with the test. Without the binary the test is skipped, or failed
// where the engine is required (make test installs it: scripts/engine.sh).
func Registry(t testing.TB) string {
	t.Helper()
	needRegistry(t)
	addr, stop, err := StartRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}

// needRegistry skips the test without Debian's docker-registry, or fails
// it where the engine is required.
func needRegistry(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("docker-registry"); err != nil {
		if os.Getenv("CI") != "" || os.Getenv("BOTHY_REQUIRE_DOCKER") != "" {
			t.Fatalf("docker-registry required (scripts/engine.sh installs it): %v", err)
		}
		t.Skipf("no docker-registry: %v", err)
	}
}

// StartRegistry starts Debian's docker-registry on a free loopback port,
// storing in dir, and waits (30 s at most) until it answers; stop ends it.
func StartRegistry(dir string) (addr string, stop func(), err error) {
	return startRegistry(dir, registryConfig{client: http.DefaultClient, scheme: "http"})
}

// registryConfig is more of a registry's configuration, and how it is
// reached.
type registryConfig struct {
	http, top string // YAML under http: (indented), and at the top level
	client    *http.Client
	scheme    string
	user, pw  string // none: ""
}

// startRegistry is StartRegistry with more of the registry's
// configuration.
func startRegistry(dir string, rc registryConfig) (addr string, stop func(), err error) {
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
	file := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(file, fmt.Appendf(nil, `version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s
%s
`, filepath.Join(dir, "storage"), addr, rc.http, rc.top), 0o644); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "serve", file)
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
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rc.scheme+"://"+addr+"/v2/", nil)
		if rc.user != "" {
			req.SetBasicAuth(rc.user, rc.pw)
		}
		if resp, err := rc.client.Do(req); err == nil {
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
	return registryTags(t, http.DefaultClient, "http://"+addr, "", "", repository)
}

func registryTags(t testing.TB, client *http.Client, base, user, password, repository string) []string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/v2/"+repository+"/tags/list", nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := client.Do(req)
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
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the registry's tags of %s: %s", repository, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Tags
}

// SecureRegistry is a registry served over TLS, with a certificate from a
// CA of the test's own making, to a user with a password.
type SecureRegistry struct {
	Addr, User, Password string
	CAFile               string // the CA's certificate, PEM
	client               *http.Client
}

// NewSecureRegistry starts a SecureRegistry, as Registry does a plain
// one. The engine trusts its CA (a file in /etc/docker/certs.d, removed
// with the registry).
func NewSecureRegistry(t testing.TB) *SecureRegistry {
	t.Helper()
	needRegistry(t)
	dir := t.TempDir()
	ca, caKey := testcert.CA(t)
	cert, key := testcert.Server(t, ca, caKey, net.IPv4(127, 0, 0, 1))
	hash, err := bcrypt.GenerateFromPassword([]byte("registry-password-0123"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	r := &SecureRegistry{User: "bothy-test", Password: "registry-password-0123", CAFile: filepath.Join(dir, "ca.crt")}
	for name, b := range map[string][]byte{"ca.crt": testcert.CAPEM(ca), "cert.pem": cert, "key.pem": key,
		"htpasswd": []byte(r.User + ":" + string(hash) + "\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	r.client = &http.Client{Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)
	addr, stop, err := startRegistry(dir, registryConfig{
		http:   fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s", filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")),
		top:    fmt.Sprintf("auth:\n  htpasswd:\n    realm: bothy-test\n    path: %s", filepath.Join(dir, "htpasswd")),
		client: r.client, scheme: "https", user: r.User, pw: r.Password,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	r.Addr = addr
	// Where the engine looks for a registry's CA.
	certs := filepath.Join("/etc/docker/certs.d", addr)
	if err := os.MkdirAll(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(certs) })
	if err := os.WriteFile(filepath.Join(certs, "ca.crt"), testcert.CAPEM(ca), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

// Tags lists the tags the registry holds of repository.
func (r *SecureRegistry) Tags(t testing.TB, repository string) []string {
	t.Helper()
	return registryTags(t, r.client, "https://"+r.Addr, r.User, r.Password, repository)
}
