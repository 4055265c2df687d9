package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	_ "modernc.org/sqlite"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
)

// hostileRun is one bothy under attack and what its routes are filled
// with: real names (a sandbox, snapshot, app, process, port, key of its
// own), so that each attack reaches as deep as it can.
type hostileRun struct {
	t       *testing.T
	addr    string
	key     string
	token   string // the sandbox's E2B data-plane token
	preview string
	real    map[string]string
	snap    string
	keyID   string
}

// hostileWait bounds every exchange of the attacks: bothy answers each
// at once, or cuts it after --read-idle (2 s here) or its header timeout
// (10 s).
const hostileWait = 45 * time.Second

// junkParams are what a hostile client puts where a route names
// something: none of them names anything, and each must be refused with a
// 4xx.
var junkParams = []string{"..%2F..%2Fetc%2Fpasswd", strings.Repeat("a", 300), "%00", "-1", "99999999999999999999999", "%ZZ"}

// fill writes the route's path with real names, but the parameter junk
// (":id", "*"...) gets junkValue; junk "all" puts junkValue everywhere.
func (h *hostileRun) fill(row api.Route, junk, junkValue string) (path, host string, hdr []string) {
	path = row.Path
	switch {
	case row.Host != "":
		id, port := h.real[":id"], h.real[":port"]
		switch junk {
		case ":id", "all":
			id = junkValue
		case ":port":
			port = junkValue
		}
		return "/", strings.NewReplacer("{port}", port, "{id}", id).Replace(row.Host), nil
	case row.Header != "":
		id := h.real[":id"]
		if junk == row.Header || junk == "all" {
			id = junkValue
		}
		hdr = []string{row.Header, id, "X-Access-Token", h.token}
		if path == "" {
			path = "/process.Process/List"
		}
		return path + "?path=/tmp/hostile-e", "", hdr
	}
	var b strings.Builder
	for i, seg := range strings.Split(path, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		name := seg
		if !strings.HasPrefix(seg, ":") && seg != "*" {
			b.WriteString(seg)
			continue
		}
		v := h.real[name]
		switch {
		case name == ":id" && strings.HasPrefix(row.Path, "/v1/snapshots/"):
			v = h.snap
		case name == ":id" && strings.HasPrefix(row.Path, "/v1/keys/"):
			v = h.keyID
		case name == "*" && !strings.HasPrefix(row.Path, "/v1/"):
			v = h.real[":id"] // E2B's /sandboxes/{id}
		}
		if junk == name || junk == "all" {
			v = junkValue
		}
		b.WriteString(v)
	}
	return b.String() + "?path=/tmp/hostile-f", "", nil
}

// params lists the route's parameters a junk value can take the place of.
func params(row api.Route) []string {
	switch {
	case row.Host != "":
		return []string{":id", ":port"}
	case row.Header != "":
		return []string{row.Header}
	}
	var out []string
	for _, seg := range strings.Split(row.Path, "/") {
		if strings.HasPrefix(seg, ":") || seg == "*" {
			out = append(out, seg)
		}
	}
	return out
}

// methodOf is the method to send to row.
func methodOf(row api.Route) string {
	if row.Method == "*" {
		return http.MethodPost
	}
	return row.Method
}

// readsBody says the route's handler reads a body it is sent: a request
// with one reaches its handler's decoding.
func readsBody(row api.Route) bool {
	switch row.Class {
	case "json", "rpc", "stream", "app", "stdin", "proxy":
		return true
	}
	return false
}

// passesThrough says the route hands the request to code of the tenant's
// (a sandbox's server, an app), which chooses its answer.
func passesThrough(row api.Route) bool { return row.Class == "proxy" || row.Class == "app" }

// head is a request's head as a hostile client writes it.
func (h *hostileRun) head(method, path, host string, hdr []string, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nX-API-Key: %s\r\nContent-Type: application/json\r\n", method, path, host, h.key, h.key)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	b.WriteString(extra)
	return b.String()
}

// dial connects to bothy with small socket buffers, so that what the
// kernel holds in flight stays small beside the limits measured.
func (h *hostileRun) dial() net.Conn {
	h.t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 16<<10)
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 16<<10)
		})
	}}
	c, err := d.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(hostileWait))
	return c
}

// send writes head and body (written by a goroutine of its own, while the
// answer is read: a server may answer before it has read all of a body)
// and answers the status, the answer's body, and how many bytes of the
// body were written before the server answered or stopped reading.
func (h *hostileRun) send(head string, body func(w io.Writer) error) (int, string, int64) {
	h.t.Helper()
	c := h.dial()
	defer c.Close()
	var sent atomic.Int64
	go func() {
		if _, err := io.WriteString(c, head); err != nil {
			return
		}
		if body != nil {
			_ = body(countWriter{c, &sent})
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error(), sent.Load()
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	return resp.StatusCode, string(b), sent.Load()
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// chunked writes n bytes of '[' as a chunked body.
func chunked(n int64) func(w io.Writer) error {
	return func(w io.Writer) error {
		chunk := strings.Repeat("[", 32<<10)
		for n > 0 {
			k := min(n, int64(len(chunk)))
			if _, err := fmt.Fprintf(w, "%x\r\n%s\r\n", k, chunk[:k]); err != nil {
				return err
			}
			n -= k
		}
		_, err := io.WriteString(w, "0\r\n\r\n")
		return err
	}
}

// attack sends row every hostile request that needs no stalled client and
// checks each answer.
func (h *hostileRun) attack(row api.Route) {
	t := h.t
	t.Helper()
	method := methodOf(row)
	name := row.Method + " " + row.Path + row.Header + row.Host
	path, host, hdr := h.fill(row, "", "")
	if host == "" {
		host = h.addr
	}
	want4xx := func(what string, status int, body string) {
		t.Helper()
		if status < 400 || status >= 500 {
			t.Errorf("%s: %s: %d %s", name, what, status, body)
		}
	}

	// A body over the route's limit, declared: refused on sight, unread.
	over := row.BodyLimit + 1
	status, body, _ := h.send(h.head(method, path, host, hdr, fmt.Sprintf("Content-Length: %d\r\n\r\n", over)), nil)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("%s: a declared body of %d bytes: %d %s", name, over, status, body)
	}

	// A body over the limit, undeclared (chunked): read no further than
	// the limit. Its handler reads it for real where it reads bodies; a
	// route that takes none gets junk names, so that it can change
	// nothing when it ignores the body.
	cpath, chost, chdr := path, host, hdr
	if !readsBody(row) {
		cpath, chost, chdr = h.fill(row, "all", "junk-name")
		if chost == "" {
			chost = h.addr
		}
	}
	size := min(row.BodyLimit+(1<<20), 64<<20)
	status, body, sent := h.send(h.head(method, cpath, chost, chdr, "Transfer-Encoding: chunked\r\n\r\n"), chunked(size))
	if readsBody(row) && !passesThrough(row) {
		want4xx("an undeclared body over the limit", status, body)
	}
	if slack := int64(8 << 20); sent > row.BodyLimit+slack {
		t.Errorf("%s: bothy took %d bytes of an undeclared body, more than %d past the limit %d", name, sent, slack, row.BodyLimit)
	}

	// Heads out of bounds: refused before routing.
	var many strings.Builder
	for i := range 200 {
		fmt.Fprintf(&many, "X-Junk-%d: %d\r\n", i, i)
	}
	for what, extra := range map[string]string{
		"200 header fields":     many.String() + "\r\n",
		"a 100 KiB header":      "X-Junk: " + strings.Repeat("j", 100<<10) + "\r\n\r\n",
		"a junk Content-Length": "Content-Length: 12abc\r\n\r\n",
		"two Content-Lengths":   "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"a NUL in a header":     "X-Junk: a\x00b\r\n\r\n",
	} {
		status, body, _ := h.send(h.head(method, path, host, hdr, extra), nil)
		want4xx(what, status, body)
	}

	// Absurd methods: never routed; on a route of one method, refused.
	status, body, _ = h.send(h.head(strings.Repeat("M", 1000), path, host, hdr, "\r\n"), nil)
	if status != http.StatusNotImplemented && status != http.StatusRequestHeaderFieldsTooLarge && status != http.StatusBadRequest {
		t.Errorf("%s: a 1000-byte method: %d %s", name, status, body)
	}
	for _, m := range []string{"FOO", "get", "PROPFIND"} {
		status, body, _ := h.send(h.head(m, path, host, hdr, "\r\n"), nil)
		if row.Method != "*" {
			if status != http.StatusMethodNotAllowed && status != http.StatusNotImplemented {
				t.Errorf("%s: method %s: %d %s", name, m, status, body)
			}
		} else if status >= 500 && status != http.StatusNotImplemented && !passesThrough(row) {
			t.Errorf("%s: method %s: %d %s", name, m, status, body)
		}
	}

	// Malformed JSON where the route reads JSON.
	if row.Class == "json" || row.Class == "rpc" {
		for _, doc := range []string{`{"`, "\xff\xfe\x00junk", `{"a":` + strings.Repeat("[", 20000)} {
			status, body, _ := h.send(h.head(method, path, host, hdr, fmt.Sprintf("Content-Length: %d\r\n\r\n", len(doc))+doc), nil)
			want4xx(fmt.Sprintf("malformed JSON %.8q", doc), status, body)
		}
	}

	// Junk where a name goes, one parameter at a time.
	for _, p := range params(row) {
		if p == "*" && passesThrough(row) {
			continue // the rest of the path is the tenant's own
		}
		for _, junk := range junkParams {
			jpath, jhost, jhdr := h.fill(row, p, junk)
			if jhost == "" {
				jhost = h.addr
			}
			status, body, _ := h.send(h.head(method, jpath, jhost, jhdr, "Content-Length: 0\r\n\r\n"), nil)
			if row.Header != "" && status == http.StatusBadGateway && strings.Contains(body, "The sandbox was not found") {
				continue // E2B's data plane answers an unknown sandbox so (docs/e2b.md)
			}
			want4xx(fmt.Sprintf("%s = %.20q", p, junk), status, body)
		}
	}
}

// stall opens connections that stop mid-request: one that stops inside
// its head, and one that stops inside its body. Each must be cut.
func (h *hostileRun) stall(row api.Route) []stalled {
	method := methodOf(row)
	path, host, hdr := h.fill(row, "", "")
	if !readsBody(row) {
		// A route that takes no body answers without reading it: junk
		// names, so that it changes nothing.
		path, host, hdr = h.fill(row, "all", "junk-name")
	}
	if host == "" {
		host = h.addr
	}
	full := h.head(method, path, host, hdr, "Content-Length: 1000\r\n\r\n")
	inHead := h.dial()
	if _, err := io.WriteString(inHead, full[:len(full)/2]); err != nil {
		h.t.Fatal(err)
	}
	inBody := h.dial()
	if _, err := io.WriteString(inBody, full+`{"aaaaaaaa`); err != nil {
		h.t.Fatal(err)
	}
	name := row.Method + " " + row.Path + row.Header + row.Host
	return []stalled{{name + " (in its head)", inHead}, {name + " (in its body)", inBody}}
}

// stalled is a client that stopped mid-request.
type stalled struct {
	name string
	conn net.Conn
}

// storeDump is every row of bothy's database but the meters (request
// log, hourly usage) and the sandboxes' last activity, as sorted text.
func storeDump(t *testing.T, data string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "bothy.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	var out []string
	for _, table := range tables {
		switch table {
		case "request_log", "usage_hourly", "sqlite_sequence":
			continue
		}
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			line := table
			for i, c := range cols {
				if c == "last_active" {
					continue
				}
				line += fmt.Sprintf(" %s=%v", c, vals[i])
			}
			out = append(out, line)
		}
		rows.Close()
	}
	sort.Strings(out)
	return out
}

// TestEveryRouteRefusesHostileInput takes the route table from the running
// bothy (GET /v1/routes: every front door, so a new route joins on its
// own) and sends each route, with bothy in a memory cgroup: a body over
// its limit, declared and not; heads out of bounds; absurd methods;
// malformed JSON; junk where each name goes; and clients that stall inside
// their head and inside their body. Every answer must be a 4xx (a route
// that passes requests on to a tenant's code excepted), every stalled
// client must be cut, the database must be unchanged, the sandbox must hold
// nothing the attacks sent, and bothy's memory must stay bounded and
// come back.
func TestEveryRouteRefusesHostileInput(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-hostile-key-0123456789abcdef"
	const preview = "preview.test"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemonArgs(t, listen, data, []string{"--read-idle", "2s", "--write-idle", "2s", "--max-file-bytes", strconv.Itoa(16 << 20)},
		"BOTHY_ADMIN_KEY="+key, "BOTHY_PREVIEW_DOMAIN="+preview, "BOTHY_METRICS_LISTEN="+metrics)
	peak, _ := memoryCgroupUsage(t, d, 1<<30)
	ctx := context.Background()
	c := api.NewClient(d.url, key)

	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Shell: "cat", Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Cmd: []string{"python3", "-m", "http.server", "-d", "/tmp", "8000"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExposePort(ctx, sb.ID, api.ExposePortRequest{Port: 8000, Public: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitPort(ctx, sb.ID, 8000, time.Minute); err != nil {
		t.Fatal(err)
	}
	snap, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "hostile"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeployApp(ctx, "echo", api.DeployAppRequest{Runtime: "python", Code: "def fetch(request, env):\n    return 'ok'\n"}); err != nil {
		t.Fatal(err)
	}
	keys, err := c.ListKeys(ctx)
	if err != nil || len(keys.Keys) == 0 {
		t.Fatalf("keys: %+v %v", keys, err)
	}
	var e2b struct {
		EnvdAccessToken string `json:"envdAccessToken"`
	}
	{
		req, _ := http.NewRequest("POST", d.url+"/sandboxes/"+sb.ID+"/connect", strings.NewReader(`{"timeout":3600}`))
		req.Header.Set("X-API-Key", key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(b, &e2b); err != nil || e2b.EnvdAccessToken == "" {
			t.Fatalf("E2B connect: %s %v", b, err)
		}
	}
	table, err := c.Routes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileRun{t: t, addr: listen, key: key, token: e2b.EnvdAccessToken, preview: preview, snap: snap.ID, keyID: keys.Keys[0].ID,
		real: map[string]string{":id": sb.ID, ":name": "echo", ":pid": strconv.Itoa(cat.PID), ":port": "8000", ":session": "s1", "*": "x"}}

	before := storeDump(t, data)
	base := settled(t, func() int64 { return heldBytes(t, metrics) })
	for _, row := range table.Routes {
		h.attack(row)
	}

	// Every route at once, with a client stalled in its head and one in
	// its body: each is cut (the head after the server's header timeout,
	// the body after --read-idle), and while they wait they hold little.
	// What the stalled clients hold is measured from what bothy holds
	// once the attacks' garbage is gone, not from before them: their
	// allocations leave the heap's spans in use somewhat fuller.
	attacked := settled(t, func() int64 { return heldBytes(t, metrics) })
	var conns []stalled
	for _, row := range table.Routes {
		conns = append(conns, h.stall(row)...)
	}
	held := heldBytes(t, metrics) - attacked
	var wg sync.WaitGroup
	for _, sc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sc.conn.Close()
			// Read what bothy answers until it closes the connection;
			// the deadline (hostileWait) fails a connection left open.
			if _, err := io.Copy(io.Discard, sc.conn); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Errorf("%s: a client that stalled was never cut", sc.name)
				}
			}
		}()
	}
	wg.Wait()
	if per := held / int64(len(conns)); per > perStalledReader {
		t.Errorf("%d stalled clients held %d bytes, %d each", len(conns), held, per)
	}

	select {
	case <-d.done:
		t.Fatalf("bothy died: %s", d.log())
	default:
	}
	after := settled(t, func() int64 { return heldBytes(t, metrics) })
	if grew := after - base; grew > 16<<20 {
		t.Errorf("bothy holds %d bytes more after the attacks", grew)
	}
	if got := storeDump(t, data); strings.Join(got, "\n") != strings.Join(before, "\n") {
		t.Errorf("the attacks changed the database:\nbefore:\n%s\nafter:\n%s", strings.Join(before, "\n"), strings.Join(got, "\n"))
	}
	res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "ls -d /tmp/hostile* 2>/dev/null; kill -0 " + strconv.Itoa(cat.PID) + " && echo cat-lives"})
	if err != nil || strings.TrimSpace(res.Stdout) != "cat-lives" {
		t.Errorf("the sandbox after the attacks: %+v %v", res, err)
	}
	t.Logf("%d routes attacked; %d stalled clients held %d KiB in all; bothy's memory cgroup peaked at %d MiB; its heap and stacks %d KiB before, %d KiB after",
		len(table.Routes), len(conns), held>>10, peak()>>20, base>>10, after>>10)
}
