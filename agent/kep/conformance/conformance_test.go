package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	processv1 "sigs.k8s.io/agent-sandbox/packages/sandboxd/spec/process/v1"

	"github.com/bothy/bothy/internal/testenv"
)

// runtime is the runtime under test: its REST base URL and a gRPC client of
// its process service (agent-sandbox's own generated client).
type runtime struct {
	rest, grpcAddr string
	proc           processv1.ProcessServiceClient
}

// target is the runtime named by SANDBOXD_REST_ADDR and SANDBOXD_GRPC_ADDR
// (as KEP-539.2's SDKs find it), or a bothy-agent started here on loopback
// ports with a root of the test's own.
func target(t *testing.T) runtime {
	t.Helper()
	restAddr, grpcAddr := os.Getenv("SANDBOXD_REST_ADDR"), os.Getenv("SANDBOXD_GRPC_ADDR")
	if restAddr == "" || grpcAddr == "" {
		restAddr, grpcAddr = freeAddr(t), freeAddr(t)
		root := t.TempDir()
		cmd := exec.Command(testenv.AgentBinary(t), "kep", "--root", root, "--rest", restAddr, "--grpc", grpcAddr)
		cmd.Env = append(os.Environ(), "SANDBOX_ID=conformance", "SANDBOX_ROOT="+root, "SANDBOX_API_KEY=must-not-show")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			<-done
		})
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if resp, err := http.Get("http://" + restAddr + "/v1/health"); err == nil {
				resp.Body.Close()
				break
			}
			select {
			case <-done:
				t.Fatal("the runtime exited")
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("the runtime did not answer within 30 s")
			}
		}
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtime{rest: "http://" + restAddr, grpcAddr: grpcAddr, proc: processv1.NewProcessServiceClient(conn)}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// do sends a request to the REST service and reads the answer.
func (rt runtime) do(t *testing.T, method, path string, body io.Reader, contentType string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, rt.rest+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// wantError checks a status and the spec's error body.
func wantError(t *testing.T, what string, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if resp.StatusCode != status || json.Unmarshal(body, &e) != nil || e.Code != code || e.Message == "" {
		t.Errorf("%s: %d %s, want %d with code %s", what, resp.StatusCode, body, status, code)
	}
}

func TestHealthAndMetadata(t *testing.T) {
	rt := target(t)
	resp, body := rt.do(t, "GET", "/v1/health", nil, "")
	var h struct {
		Status string `json:"status"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &h) != nil || h.Status != "ok" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("health: %d %s", resp.StatusCode, body)
	}
	resp, body = rt.do(t, "GET", "/v1/metadata", nil, "")
	var m struct {
		Env map[string]string `json:"env"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &m) != nil || m.Env == nil {
		t.Fatalf("metadata: %d %s", resp.StatusCode, body)
	}
	for k := range m.Env {
		if strings.Contains(strings.ToUpper(k), "KEY") || strings.Contains(strings.ToUpper(k), "TOKEN") {
			t.Errorf("metadata tells a credential-like variable %s", k)
		}
	}
}

func TestFiles(t *testing.T) {
	rt := target(t)
	base := fmt.Sprintf("conformance-%d", time.Now().UnixNano())
	// PUT makes the parents, applies the mode, answers 204.
	resp, body := rt.do(t, "PUT", "/v1/files/"+base+"/sub/a.txt?mode=0600", strings.NewReader("hello"), "application/octet-stream")
	if resp.StatusCode != 204 {
		t.Fatalf("put: %d %s", resp.StatusCode, body)
	}
	resp, body = rt.do(t, "GET", "/v1/files/"+base+"/sub/a.txt", nil, "")
	if resp.StatusCode != 200 || string(body) != "hello" || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("get: %d %q %s", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
	// Overwriting is idempotent.
	if resp, body = rt.do(t, "PUT", "/v1/files/"+base+"/sub/a.txt?mode=0600", strings.NewReader("hello"), "application/octet-stream"); resp.StatusCode != 204 {
		t.Fatalf("put again: %d %s", resp.StatusCode, body)
	}
	// HEAD: 200 for what exists, 404 for what does not, and no body.
	if resp, body = rt.do(t, "HEAD", "/v1/files/"+base+"/sub/a.txt", nil, ""); resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("head: %d %q", resp.StatusCode, body)
	}
	if resp, _ = rt.do(t, "HEAD", "/v1/files/"+base+"/nothing", nil, ""); resp.StatusCode != 404 {
		t.Fatalf("head of nothing: %d", resp.StatusCode)
	}
	// A directory lists as JSON.
	resp, body = rt.do(t, "GET", "/v1/files/"+base+"/sub", nil, "")
	var listing struct {
		Path    string `json:"path"`
		Entries []struct {
			Name       string `json:"name"`
			Size       int64  `json:"size"`
			Type       string `json:"type"`
			ModifiedAt string `json:"modified_at"`
			Mode       string `json:"mode"`
		} `json:"entries"`
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || json.Unmarshal(body, &listing) != nil {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	if len(listing.Entries) != 1 || listing.Entries[0].Name != "a.txt" || listing.Entries[0].Size != 5 || listing.Entries[0].Type != "file" || listing.Entries[0].Mode != "0600" {
		t.Fatalf("listing: %s", body)
	}
	if _, err := time.Parse(time.RFC3339, listing.Entries[0].ModifiedAt); err != nil {
		t.Fatalf("modified_at %q: %v", listing.Entries[0].ModifiedAt, err)
	}
	resp, body = rt.do(t, "GET", "/v1/files/"+base, nil, "")
	if json.Unmarshal(body, &listing) != nil || len(listing.Entries) != 1 || listing.Entries[0].Type != "directory" {
		t.Fatalf("list of the parent: %d %s", resp.StatusCode, body)
	}
	// An encoded slash is a slash.
	if resp, body = rt.do(t, "PUT", "/v1/files/"+base+"%2Fenc.txt", strings.NewReader("encoded"), "application/octet-stream"); resp.StatusCode != 204 {
		t.Fatalf("put with %%2F: %d %s", resp.StatusCode, body)
	}
	if _, body = rt.do(t, "GET", "/v1/files/"+base+"/enc.txt", nil, ""); string(body) != "encoded" {
		t.Fatalf("get of an encoded put: %q", body)
	}
	// A multipart form's file part.
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "m.txt")
	_, _ = fw.Write([]byte("from a form"))
	_ = mw.Close()
	if resp, body = rt.do(t, "PUT", "/v1/files/"+base+"/m.txt", &form, mw.FormDataContentType()); resp.StatusCode != 204 {
		t.Fatalf("multipart put: %d %s", resp.StatusCode, body)
	}
	if _, body = rt.do(t, "GET", "/v1/files/"+base+"/m.txt", nil, ""); string(body) != "from a form" {
		t.Fatalf("get of a multipart put: %q", body)
	}
	// Bad modes and a directory as the target are 400.
	for _, mode := range []string{"0999", "755", "07555", "abc"} {
		resp, body = rt.do(t, "PUT", "/v1/files/"+base+"/bad.txt?mode="+mode, strings.NewReader("x"), "application/octet-stream")
		wantError(t, "mode "+mode, resp, body, 400, "INVALID_ARGUMENT")
	}
	resp, body = rt.do(t, "PUT", "/v1/files/"+base+"/sub", strings.NewReader("x"), "application/octet-stream")
	wantError(t, "put onto a directory", resp, body, 400, "INVALID_ARGUMENT")
	// What does not exist is 404.
	resp, body = rt.do(t, "GET", "/v1/files/"+base+"/nothing", nil, "")
	wantError(t, "get of nothing", resp, body, 404, "NOT_FOUND")
	resp, body = rt.do(t, "DELETE", "/v1/files/"+base+"/nothing", nil, "")
	wantError(t, "delete of nothing", resp, body, 404, "NOT_FOUND")
	// A directory that is not empty goes only with recursive=true.
	resp, body = rt.do(t, "DELETE", "/v1/files/"+base+"/sub", nil, "")
	wantError(t, "delete of a full directory", resp, body, 409, "CONFLICT")
	if resp, body = rt.do(t, "DELETE", "/v1/files/"+base+"/m.txt", nil, ""); resp.StatusCode != 204 {
		t.Fatalf("delete of a file: %d %s", resp.StatusCode, body)
	}
	if resp, body = rt.do(t, "DELETE", "/v1/files/"+base+"?recursive=true", nil, ""); resp.StatusCode != 204 {
		t.Fatalf("recursive delete: %d %s", resp.StatusCode, body)
	}
	if resp, _ = rt.do(t, "GET", "/v1/files/"+base+"/sub/a.txt", nil, ""); resp.StatusCode != 404 {
		t.Fatalf("after the delete: %d", resp.StatusCode)
	}
}

func TestFilesStayUnderTheRoot(t *testing.T) {
	rt := target(t)
	ctx := context.Background()
	link := fmt.Sprintf("escape-%d", time.Now().UnixNano())
	// A link out of the root, made by code in the sandbox.
	if res, err := rt.proc.Execute(ctx, &processv1.ExecuteRequest{Config: &processv1.ProcessConfig{Command: []string{"ln", "-s", "/", link}}}); err != nil || res.GetExitCode() != 0 {
		t.Fatalf("ln: %v %v", err, res)
	}
	defer rt.do(t, "DELETE", "/v1/files/"+link, nil, "")
	for _, p := range []string{
		"..%2F..%2F..%2Fetc%2Fpasswd",
		"%2E%2E%2Fetc%2Fpasswd",
		link + "/etc/passwd",
		link + "%2Fetc%2Fpasswd",
	} {
		resp, body := rt.do(t, "GET", "/v1/files/"+p, nil, "")
		wantError(t, "get "+p, resp, body, 403, "PERMISSION_DENIED")
		resp, body = rt.do(t, "PUT", "/v1/files/"+p, strings.NewReader("x"), "application/octet-stream")
		wantError(t, "put "+p, resp, body, 403, "PERMISSION_DENIED")
	}
	// A working directory outside the root is refused too.
	_, err := rt.proc.Execute(ctx, &processv1.ExecuteRequest{Config: &processv1.ProcessConfig{Command: []string{"pwd"}, Cwd: proto("../..")}})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("cwd outside the root: %v", err)
	}
}

func proto(s string) *string { return &s }

func TestExecute(t *testing.T) {
	rt := target(t)
	ctx := context.Background()
	res, err := rt.proc.Execute(ctx, &processv1.ExecuteRequest{Config: &processv1.ProcessConfig{
		Command: []string{"sh", "-c", `echo "out $GREETING"; echo err >&2; exit 3`},
		EnvVars: map[string]string{"GREETING": "hello"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetExitCode() != 3 || string(res.GetStdout()) != "out hello\n" || string(res.GetStderr()) != "err\n" {
		t.Fatalf("execute: %v", res)
	}
	// cwd is relative to the root.
	dir := fmt.Sprintf("cwd-%d", time.Now().UnixNano())
	if resp, body := rt.do(t, "PUT", "/v1/files/"+dir+"/marker", strings.NewReader("m"), "application/octet-stream"); resp.StatusCode != 204 {
		t.Fatalf("put: %d %s", resp.StatusCode, body)
	}
	defer rt.do(t, "DELETE", "/v1/files/"+dir+"?recursive=true", nil, "")
	res, err = rt.proc.Execute(ctx, &processv1.ExecuteRequest{Config: &processv1.ProcessConfig{Command: []string{"cat", "marker"}, Cwd: proto(dir)}})
	if err != nil || string(res.GetStdout()) != "m" {
		t.Fatalf("execute in a cwd: %v %v", err, res)
	}
	for _, c := range []struct {
		cfg  *processv1.ProcessConfig
		code codes.Code
	}{
		{&processv1.ProcessConfig{}, codes.InvalidArgument},
		{&processv1.ProcessConfig{Command: []string{"no-such-command-anywhere"}}, codes.NotFound},
		{&processv1.ProcessConfig{Command: []string{"true"}, Cwd: proto("no/such/dir")}, codes.NotFound},
	} {
		if _, err := rt.proc.Execute(ctx, &processv1.ExecuteRequest{Config: c.cfg}); status.Code(err) != c.code {
			t.Errorf("%v: %v, want %s", c.cfg, err, c.code)
		}
	}
}

// events reads a Start stream's events until its exit, calling each on
// every stdout or stderr piece; it returns the output and the exit code.
func events(t *testing.T, stream processv1.ProcessService_StartClient, each func(out string)) (out string, code int32) {
	t.Helper()
	var b strings.Builder
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream ended before its exit event: %v (output %q)", err, b.String())
		}
		switch e := ev.Event.(type) {
		case *processv1.StartResponse_Stdout:
			b.Write(e.Stdout)
		case *processv1.StartResponse_Stderr:
			b.Write(e.Stderr)
		case *processv1.StartResponse_Exit:
			return b.String(), e.Exit.GetExitCode()
		default:
			t.Fatalf("unexpected event %v", ev)
		}
		if each != nil {
			each(b.String())
		}
	}
}

// started starts req and reads its init event.
func started(t *testing.T, ctx context.Context, rt runtime, req *processv1.StartRequest) (processv1.ProcessService_StartClient, int32) {
	t.Helper()
	stream, err := rt.proc.Start(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil || ev.GetInit() == nil || ev.GetInit().GetProcessId() <= 0 {
		t.Fatalf("first event: %v %v", ev, err)
	}
	return stream, ev.GetInit().GetProcessId()
}

func TestStartStdinAndExit(t *testing.T) {
	rt := target(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, pid := started(t, ctx, rt, &processv1.StartRequest{Config: &processv1.ProcessConfig{Command: []string{"sh", "-c", "cat; echo done >&2"}}})
	if _, err := rt.proc.WriteStdin(ctx, &processv1.WriteStdinRequest{ProcessId: pid, Payload: &processv1.WriteStdinRequest_Input{Input: []byte("hello\n")}}); err != nil {
		t.Fatal(err)
	}
	sentEOF := false
	out, code := events(t, stream, func(out string) {
		if !sentEOF && strings.Contains(out, "hello\n") {
			sentEOF = true
			if _, err := rt.proc.WriteStdin(ctx, &processv1.WriteStdinRequest{ProcessId: pid, Payload: &processv1.WriteStdinRequest_Eof{Eof: &emptypb.Empty{}}}); err != nil {
				t.Error(err)
			}
		}
	})
	if code != 0 || out != "hello\ndone\n" {
		t.Fatalf("exit %d, output %q", code, out)
	}
	// The process is gone: its pid is not found.
	if _, err := rt.proc.WriteStdin(ctx, &processv1.WriteStdinRequest{ProcessId: pid, Payload: &processv1.WriteStdinRequest_Input{Input: []byte("x")}}); status.Code(err) != codes.NotFound {
		t.Fatalf("stdin of an exited process: %v", err)
	}
}

func TestSignals(t *testing.T) {
	rt := target(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, pid := started(t, ctx, rt, &processv1.StartRequest{Config: &processv1.ProcessConfig{Command: []string{"sh", "-c", "echo up; exec sleep 600"}}})
	signalled := false
	_, code := events(t, stream, func(out string) {
		if !signalled && strings.Contains(out, "up") {
			signalled = true
			if _, err := rt.proc.SendSignal(ctx, &processv1.SendSignalRequest{ProcessId: pid, Signal: processv1.Signal_SIGNAL_SIGTERM}); err != nil {
				t.Error(err)
			}
		}
	})
	if code == 0 {
		t.Fatal("a process killed by SIGTERM exited 0")
	}
	for _, c := range []struct {
		req  *processv1.SendSignalRequest
		code codes.Code
	}{
		{&processv1.SendSignalRequest{ProcessId: 999999, Signal: processv1.Signal_SIGNAL_SIGKILL}, codes.NotFound},
	} {
		if _, err := rt.proc.SendSignal(ctx, c.req); status.Code(err) != c.code {
			t.Errorf("%v: %v, want %s", c.req, err, c.code)
		}
	}
	// An unspecified signal is refused, and the process lives on.
	stream, pid = started(t, ctx, rt, &processv1.StartRequest{Config: &processv1.ProcessConfig{Command: []string{"sleep", "600"}}})
	if _, err := rt.proc.SendSignal(ctx, &processv1.SendSignalRequest{ProcessId: pid}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unspecified signal: %v", err)
	}
	if _, err := rt.proc.ResizeTTY(ctx, &processv1.ResizeTTYRequest{ProcessId: pid, Cols: 80, Rows: 24}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("resize of a process without a terminal: %v", err)
	}
	if _, err := rt.proc.SendSignal(ctx, &processv1.SendSignalRequest{ProcessId: pid, Signal: processv1.Signal_SIGNAL_SIGKILL}); err != nil {
		t.Fatal(err)
	}
	if _, code := events(t, stream, nil); code == 0 {
		t.Fatal("a process killed by SIGKILL exited 0")
	}
}

func TestTerminal(t *testing.T) {
	rt := target(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, pid := started(t, ctx, rt, &processv1.StartRequest{
		Config: &processv1.ProcessConfig{Command: []string{"sh"}},
		Pty:    &processv1.PTY{Cols: 80, Rows: 24},
	})
	input := func(s string) {
		if _, err := rt.proc.WriteStdin(ctx, &processv1.WriteStdinRequest{ProcessId: pid, Payload: &processv1.WriteStdinRequest_Input{Input: []byte(s)}}); err != nil {
			t.Fatal(err)
		}
	}
	input("echo $((6*7)); stty size\n")
	step := 0
	out, code := events(t, stream, func(out string) {
		switch {
		case step == 0 && strings.Contains(out, "42") && strings.Contains(out, "24 80"):
			step = 1
			if _, err := rt.proc.ResizeTTY(ctx, &processv1.ResizeTTYRequest{ProcessId: pid, Cols: 100, Rows: 40}); err != nil {
				t.Error(err)
			}
			input("stty size; exit 7\n")
		}
	})
	if !strings.Contains(out, "40 100") || code != 7 {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

// root is the runtime's root as its metadata tells it ("" when it does not).
func (rt runtime) root(t *testing.T) string {
	t.Helper()
	_, body := rt.do(t, "GET", "/v1/metadata", nil, "")
	var m struct {
		Env map[string]string `json:"env"`
	}
	_ = json.Unmarshal(body, &m)
	return m.Env["SANDBOX_ROOT"]
}

func TestPathsAsTheReferenceRuntimeTakesThem(t *testing.T) {
	rt := target(t)
	ctx := context.Background()
	base := fmt.Sprintf("paths-%d", time.Now().UnixNano())
	if resp, body := rt.do(t, "PUT", "/v1/files/"+base+"/file", strings.NewReader("f"), "application/octet-stream"); resp.StatusCode != 204 {
		t.Fatalf("put: %d %s", resp.StatusCode, body)
	}
	defer rt.do(t, "DELETE", "/v1/files/"+base+"?recursive=true", nil, "")
	// A path through a file names nothing; a write there is refused.
	resp, body := rt.do(t, "GET", "/v1/files/"+base+"/file/x", nil, "")
	wantError(t, "get through a file", resp, body, 404, "NOT_FOUND")
	resp, body = rt.do(t, "PUT", "/v1/files/"+base+"/file/x", strings.NewReader("x"), "application/octet-stream")
	wantError(t, "put through a file", resp, body, 400, "INVALID_ARGUMENT")
	// An absolute path under the root is the root's relative one.
	root := rt.root(t)
	if root == "" {
		t.Skip("the runtime's metadata does not tell its root")
	}
	if _, body = rt.do(t, "GET", "/v1/files/"+strings.ReplaceAll(root+"/"+base+"/file", "/", "%2F"), nil, ""); string(body) != "f" {
		t.Fatalf("get by the absolute path: %q", body)
	}
	res, err := rt.proc.Execute(ctx, &processv1.ExecuteRequest{Config: &processv1.ProcessConfig{Command: []string{"cat", "file"}, Cwd: proto(root + "/" + base)}})
	if err != nil || string(res.GetStdout()) != "f" {
		t.Fatalf("an absolute cwd under the root: %v %v", err, res)
	}
}

// The runtime is reached on the sandbox's loopback by anything that runs
// there, a browser's pages included: it must not serve what a page can send.
func TestHostileLocalClients(t *testing.T) {
	rt := target(t)
	ctx := context.Background()
	// A page whose DNS name was rebound to 127.0.0.1 names its own host.
	req, _ := http.NewRequest("GET", rt.rest+"/v1/files/", nil)
	req.Host = "rebound.example:8080"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a rebound host got %d", resp.StatusCode)
	}
	// The process service speaks gRPC over HTTP/2 only: no browser's
	// request (HTTP/1.1, JSON) starts a process.
	if resp, err := http.Post("http://"+rt.grpcAddr+"/process.v1.ProcessService/Execute", "application/json", strings.NewReader(`{"config":{"command":["id"]}}`)); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || strings.Contains(string(b), "uid=") {
			t.Fatalf("an HTTP/1.1 JSON request ran a process: %d %s", resp.StatusCode, b)
		}
	}
	// A FIFO is refused, not waited on.
	name := fmt.Sprintf("fifo-%d", time.Now().UnixNano())
	if res, err := rt.proc.Execute(ctx, &processv1.ExecuteRequest{Config: &processv1.ProcessConfig{Command: []string{"mkfifo", name}}}); err != nil || res.GetExitCode() != 0 {
		t.Fatalf("mkfifo: %v %v", err, res)
	}
	defer rt.do(t, "DELETE", "/v1/files/"+name, nil, "")
	for _, method := range []string{"GET", "HEAD"} {
		client := &http.Client{Timeout: 20 * time.Second}
		req, _ := http.NewRequest(method, rt.rest+"/v1/files/"+name, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s of a FIFO: %v", method, err)
		}
		resp.Body.Close()
		if method == "GET" && resp.StatusCode != 400 {
			t.Fatalf("GET of a FIFO: %d", resp.StatusCode)
		}
	}
	// A process that does not read its stdin: a write to it ends with its
	// deadline, and the process's stream still ends with it.
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stream, pid := started(t, sctx, rt, &processv1.StartRequest{Config: &processv1.ProcessConfig{Command: []string{"sleep", "600"}}})
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = rt.proc.WriteStdin(wctx, &processv1.WriteStdinRequest{ProcessId: pid, Payload: &processv1.WriteStdinRequest_Input{Input: make([]byte, 4<<20)}})
	wcancel()
	if err == nil {
		t.Fatal("4 MiB went into the stdin of a process that does not read it")
	}
	if _, err := rt.proc.SendSignal(sctx, &processv1.SendSignalRequest{ProcessId: pid, Signal: processv1.Signal_SIGNAL_SIGKILL}); err != nil {
		t.Fatal(err)
	}
	if _, code := events(t, stream, nil); code == 0 {
		t.Fatal("a killed process exited 0")
	}
}
