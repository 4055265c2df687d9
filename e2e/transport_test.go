package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testcert"
	"github.com/bothy/bothy/internal/testenv"
)

// probe is run as root inside a sandbox on the network transport: it tries
// to get a hello out of agents with what code in a sandbox can get hold of
// (nothing, its own agent's certificate and key, a certificate bothy's
// name forged with a CA of its own) and prints what each attempt got.
const probe = `
import json, socket, ssl, sys
own, other = "127.0.0.1", sys.argv[1]
run = "/.bothy/run/"
def attempt(host, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    try:
        s = socket.create_connection((host, 49980), timeout=3)
    except OSError as e:
        return "unreachable: %s" % e
    try:
        t = ctx.wrap_socket(s)
        t.settimeout(5)
        data = t.recv(65536)
        return "hello: %r" % data[:200] if data else "closed"
    except (OSError, ssl.SSLError) as e:
        return "refused: %s" % e
out = {
    "own, no certificate": attempt(own),
    "own, the agent's certificate": attempt(own, run + "agent.pem", run + "agent-key.pem"),
    "own, forged": attempt(own, "/tmp/forged.pem", "/tmp/forged-key.pem"),
    "other, the agent's certificate": attempt(other, run + "agent.pem", run + "agent-key.pem"),
    "other, forged": attempt(other, "/tmp/forged.pem", "/tmp/forged-key.pem"),
}
print(json.dumps(out))
`

// TestNetworkTransportFromInside: code in a sandbox on the network transport
// gets nothing out of its own agent's port or another sandbox's, whatever
// credentials it holds or makes; and it holds nothing of bothy's.
func TestNetworkTransportFromInside(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-transport-key-0123456789abcdef"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, listen, data, "BOTHY_ADMIN_KEY="+key, "BOTHY_AGENT_TRANSPORT=tcp")
	c := api.NewClient(d.url, key)
	ctx := context.Background()
	a, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Exec(ctx, b.ID, api.ExecRequest{Shell: "hostname -I"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	otherIP := strings.Fields(res.Stdout)[0]
	// A certificate with bothy's name for sandbox a, from a CA of the
	// sandbox's own making.
	forgedCA, forgedKey := testcert.CA(t)
	forgedCert, forgedPEMKey := testcert.Leaf(t, forgedCA, forgedKey, "bothy:sandbox/"+a.ID+"/bothyd", x509.ExtKeyUsageClientAuth)
	for name, body := range map[string][]byte{"/tmp/forged.pem": forgedCert, "/tmp/forged-key.pem": forgedPEMKey} {
		if _, err := c.WriteFile(ctx, a.ID, name, bytes.NewReader(body), api.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// What a sandbox's root can read of the channel: its agent's
	// credentials, never the CA's key or bothy's certificate.
	res, err = c.Exec(ctx, a.ID, api.ExecRequest{Shell: "test -r /.bothy/run/agent-key.pem && ! test -e /.bothy/run/ca-key.pem && ! grep -rl 'bothyd' /.bothy/run/ 2>/dev/null | grep -v '^$'"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("the sandbox sees more of the channel than its agent's credentials: %v %+v", err, res)
	}
	res, err = c.Exec(ctx, a.ID, api.ExecRequest{Cmd: []string{"python3", "-c", probe, otherIP}})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("probe: %v %+v", err, res)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(res.Stdout), &got); err != nil {
		t.Fatalf("probe said %q: %v", res.Stdout, err)
	}
	if len(got) != 5 {
		t.Fatalf("probe: %v", got)
	}
	for attempt, outcome := range got {
		t.Logf("%s: %s", attempt, outcome)
		if len(outcome) >= 5 && outcome[:5] == "hello" {
			t.Errorf("%s: an agent said hello: %s", attempt, outcome)
		}
	}
	// Both sandboxes still serve bothy.
	for _, id := range []string{a.ID, b.ID} {
		if res, err := c.Exec(ctx, id, api.ExecRequest{Cmd: []string{"true"}}); err != nil || res.ExitCode != 0 {
			t.Fatalf("%s after the probe: %v %+v", id, err, res)
		}
	}
	// Code in the sandbox holds its agent's port busy with handshakes that
	// never start, from every address it has; a bothy that dials in anew
	// (restarted here) is served all the same.
	if _, err := c.StartProcess(ctx, a.ID, api.StartProcessRequest{Cmd: []string{"python3", "-c", hoarder, strings.Fields(ownIP(t, c, a.ID))[0]}}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		res, err := c.Exec(ctx, a.ID, api.ExecRequest{Shell: "cat /tmp/hoarding 2>/dev/null"})
		if err == nil && strings.TrimSpace(res.Stdout) == "24" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hoarder did not hold its connections: %+v %v", res, err)
		}
	}
	d.kill()
	d = startDaemon(t, listen, data, "BOTHY_ADMIN_KEY="+key, "BOTHY_AGENT_TRANSPORT=tcp")
	c = api.NewClient(d.url, key)
	if res, err := c.Exec(ctx, a.ID, api.ExecRequest{Cmd: []string{"true"}}); err != nil || res.ExitCode != 0 {
		t.Fatalf("bothy was not served beside the hoarded handshakes: %v %+v", err, res)
	}
}

// hoarder keeps 12 connections to its agent's port from the loopback and
// 12 from the sandbox's address (argv[1]), says nothing on them, and opens
// each again when the agent closes it; /tmp/hoarding says it has begun.
const hoarder = `
import socket, sys, threading, time
own = sys.argv[1]
made = [0]
lock = threading.Lock()
def hold(host):
    while True:
        try:
            s = socket.create_connection((host, 49980), timeout=5)
        except OSError:
            time.sleep(0.05)
            continue
        with lock:
            made[0] += 1
            if made[0] == 24:
                open("/tmp/hoarding", "w").write("24")
        try:
            s.settimeout(None)
            s.recv(1)
        except OSError:
            pass
        s.close()
        time.sleep(0.01)
for host in ["127.0.0.1"] * 12 + [own] * 12:
    threading.Thread(target=hold, args=(host,), daemon=True).start()
while True:
    time.sleep(60)
`

// ownIP is a sandbox's address on its network.
func ownIP(t *testing.T, c *api.Client, id string) string {
	t.Helper()
	res, err := c.Exec(context.Background(), id, api.ExecRequest{Shell: "hostname -I"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	return res.Stdout
}
