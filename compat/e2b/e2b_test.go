package e2b

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/bounds"
	pb "github.com/bothy/bothy/compat/e2b/envd/process"
	"github.com/bothy/bothy/fsapi"
	"github.com/bothy/bothy/process"
)

// The SDK escapes each key and value, joins them as a query string, and
// sends that as one value: ?metadata= is escaped three times over.
func TestMetadataFilter(t *testing.T) {
	inner := url.Values{url.QueryEscape("run_id"): {url.QueryEscape("r1")}, url.QueryEscape("purpose"): {url.QueryEscape("agent session & test/1")}}
	q := url.Values{"metadata": {inner.Encode()}}
	parsed, _ := url.ParseQuery(q.Encode())
	got, err := metadataFilter(parsed.Get("metadata"))
	if err != nil || len(got) != 2 || got["run_id"] != "r1" || got["purpose"] != "agent session & test/1" {
		t.Fatalf("%v %v", got, err)
	}
	if got, err := metadataFilter(""); got != nil || err != nil {
		t.Fatalf("no filter: %v %v", got, err)
	}
	if _, err := metadataFilter("a=%zz"); err == nil {
		t.Fatal("a broken escape was taken")
	}
}

// TestPaths: envd's paths reach the domain absolute, or relative to the
// acting user's home, which the sandbox's agent finds in the sandbox (a
// guess such as /home/NAME would be wrong for any user whose home is
// elsewhere).
func TestPaths(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "."},
		{"~", "."},
		{"p/f.txt", "p/f.txt"},
		{"~/x", "x"},
		{"~/", "."},
		{"/etc/../tmp/x", "/tmp/x"},
		{"../../etc/passwd", "../../etc/passwd"},
	} {
		if got := inHome(tc.in); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEntryPermissions(t *testing.T) {
	for _, tc := range []struct {
		fi   fsapi.FileInfo
		want string
	}{
		{fsapi.FileInfo{Type: fsapi.TypeFile, Mode: 0o644}, "-rw-r--r--"},
		{fsapi.FileInfo{Type: fsapi.TypeDir, Mode: 0o755}, "drwxr-xr-x"},
		{fsapi.FileInfo{Type: fsapi.TypeSymlink, Mode: 0o777}, "lrwxrwxrwx"},
	} {
		if got := permissions(tc.fi); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.fi, got, tc.want)
		}
	}
	e := entryOf(fsapi.FileInfo{Name: "l", Path: "/l", Type: fsapi.TypeSymlink, Target: "/t", MTime: time.Unix(5, 0)})
	if e.GetSymlinkTarget() != "/t" || e.ModifiedTime.AsTime().Unix() != 5 {
		t.Fatalf("%+v", e)
	}
}

// An end event says what Go's ProcessState would: the SDK turns a non-zero
// code into CommandExitError with error as its message.
func TestEndOf(t *testing.T) {
	zero, three := 0, 3
	for _, tc := range []struct {
		info process.Info
		want *pb.ProcessEvent_EndEvent
	}{
		{process.Info{ExitCode: &zero}, &pb.ProcessEvent_EndEvent{ExitCode: 0, Exited: true, Status: "exit status 0"}},
		{process.Info{ExitCode: &three}, &pb.ProcessEvent_EndEvent{ExitCode: 3, Exited: true, Status: "exit status 3"}},
		{process.Info{Signal: "SIGKILL"}, &pb.ProcessEvent_EndEvent{ExitCode: -1, Exited: false, Status: "signal: killed"}},
	} {
		got := endOf(tc.info)
		if got.ExitCode != tc.want.ExitCode || got.Exited != tc.want.Exited || got.Status != tc.want.Status ||
			(got.Error != nil) != (tc.want.Status != "exit status 0") || (got.Error != nil && *got.Error != got.Status) {
			t.Errorf("%+v: %+v, want %+v", tc.info, got, tc.want)
		}
	}
}

func TestRouting(t *testing.T) {
	s := &Service{}
	kinds := map[string]string{}
	for _, m := range s.Mounts() {
		if strings.HasPrefix(m.Path, "/v1/") || m.Path == "/healthz" || m.Path == "/" {
			t.Errorf("mount %s collides with bothy's own routes", m.Path)
		}
		kinds[m.Header+" "+m.Path] = m.Kind
	}
	for p, kind := range map[string]string{
		" /sandboxes": bounds.KindJSON, " /sandboxes/*": bounds.KindJSON, " /v2/sandboxes": bounds.KindJSON, " /v2/sandboxes/*": bounds.KindJSON,
		"E2b-Sandbox-Id /files": bounds.KindStream, "E2b-Sandbox-Id ": bounds.KindRPC,
	} {
		if kinds[p] != kind {
			t.Errorf("%s: kind %q, want %q", p, kinds[p], kind)
		}
	}
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth("root", "")
	if basicUser(r) != "root" {
		t.Fatal("basic user")
	}
	r.Header.Set("Authorization", "Basic !!!")
	if basicUser(r) != "" {
		t.Fatal("a broken basic header named a user")
	}
}
