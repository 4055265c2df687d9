package e2b

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"path"
	"strings"

	"connectrpc.com/connect"
	cerrdefs "github.com/containerd/errdefs"
	"google.golang.org/protobuf/reflect/protoreflect"

	pbfs "github.com/bothy/bothy/compat/e2b/envd/filesystem"
	"github.com/bothy/bothy/compat/e2b/envd/filesystem/filesystemconnect"
	pbprocess "github.com/bothy/bothy/compat/e2b/envd/process"
	"github.com/bothy/bothy/compat/e2b/envd/process/processconnect"
	"github.com/bothy/bothy/fsapi"
)

// maxRPCMessage bounds one message of a data-plane RPC (stdin writes are
// the largest).
const maxRPCMessage = 16 << 20

// target is the sandbox a data-plane request acts on, and as whom.
type target struct {
	owner, id string
	// user runs the request's commands and file operations.
	user string
}

// inHome is a path as envd takes it (absolute, or under the acting user's
// home, "~" included) as the domain does: absolute, or relative to that
// home, which the sandbox's agent looks up in the sandbox's own accounts.
func inHome(p string) string {
	switch {
	case p == "" || p == "~":
		return "."
	case strings.HasPrefix(p, "~/"):
		p = p[2:]
	}
	return path.Clean(p)
}

func (t target) files() fsapi.Target {
	return fsapi.Target{Owner: t.owner, Sandbox: t.id, User: t.user}
}

type targetKey struct{}

func targetOf(ctx context.Context) target {
	t, _ := ctx.Value(targetKey{}).(target)
	return t
}

// dataPlane serves envd's RPCs and REST routes for the sandbox each request
// names in E2b-Sandbox-Id, with that sandbox's access token.
func (s *Service) dataPlane() http.Handler {
	mux := http.NewServeMux()
	opts := []connect.HandlerOption{connect.WithReadMaxBytes(maxRPCMessage)}
	mux.Handle(processconnect.NewProcessHandler(&processServer{s: s}, opts...))
	mux.Handle(filesystemconnect.NewFilesystemHandler(&filesystemServer{s: s}, opts...))
	// The RPCs there are: another path under a service answers Connect's
	// unimplemented, in JSON, not net/http's plain 404.
	rpcs := map[string]bool{}
	for _, sd := range []protoreflect.ServiceDescriptor{
		pbprocess.File_process_process_proto.Services().ByName("Process"),
		pbfs.File_filesystem_filesystem_proto.Services().ByName("Filesystem"),
	} {
		for i := range sd.Methods().Len() {
			rpcs["/"+string(sd.FullName())+"/"+string(sd.Methods().Get(i).Name())] = true
		}
	}
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /files", s.readFile)
	mux.HandleFunc("POST /files", s.writeFiles)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "bothy does not serve "+r.Method+" "+r.URL.Path+" of envd (docs/e2b.md)")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The checks are a call of their own: a stream's handler waits
		// for as long as the stream lasts, and its stack stays as deep as
		// the frames under it are big (issue 22).
		if t, ok := s.admit(w, r, rpcs); ok {
			mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, t)))
		}
	})
}

// admit checks a data-plane request (its RPC, its port, its sandbox, its
// token, its key's budget) and says whom it acts as; a request it
// refuses has its answer.
//
//go:noinline
func (s *Service) admit(w http.ResponseWriter, r *http.Request, rpcs map[string]bool) (target, bool) {
	ctx, id := r.Context(), r.Header.Get(headerSandboxID)
	rpc := isRPC(r.URL.Path)
	if rpc && !rpcs[r.URL.Path] {
		deny(w, true, http.StatusNotFound, connect.CodeUnimplemented, "no such RPC: "+r.URL.Path)
		return target{}, false
	}
	if port := r.Header.Get(headerSandboxPort); port != "" && port != envdPort {
		deny(w, rpc, http.StatusBadGateway, connect.CodeUnavailable,
			"bothy serves E2B's data plane on port "+envdPort+" only; reach a sandbox's own ports at /v1/sandboxes/"+id+"/ports/"+port+"/ (docs/ports.md)")
		return target{}, false
	}
	owner, err := s.d.Orchestrator.OwnerOf(ctx, id)
	if cerrdefs.IsNotFound(err) {
		// As E2B's proxy answers for a sandbox that is gone.
		writeJSON(w, http.StatusBadGateway, map[string]any{"sandboxId": id, "message": "The sandbox was not found", "code": http.StatusBadGateway})
		return target{}, false
	} else if err != nil {
		deny(w, rpc, http.StatusInternalServerError, connect.CodeInternal, "internal error")
		return target{}, false
	}
	if !s.checkToken(ctx, id, r.Header.Get(headerAccessToken)) {
		deny(w, rpc, http.StatusUnauthorized, connect.CodeUnauthenticated, "missing or wrong "+headerAccessToken+" for sandbox "+id)
		return target{}, false
	}
	if err := enter(r, owner, id); err != nil {
		deny(w, rpc, http.StatusTooManyRequests, connect.CodeResourceExhausted, err.Error())
		return target{}, false
	}
	sb, err := s.d.Orchestrator.Get(ctx, owner, id)
	if err != nil {
		deny(w, rpc, http.StatusBadGateway, connect.CodeUnavailable, err.Error())
		return target{}, false
	}
	t := target{owner: owner, id: id, user: sb.Spec.User}
	if u := basicUser(r); u != "" {
		t.user = u
	} else if u := r.URL.Query().Get("username"); u != "" && r.URL.Path == "/files" {
		t.user = u
	}
	if t.user == "" {
		t.user = "root"
	}
	return t, true
}

// isRPC says p is one of the Connect services' paths.
func isRPC(p string) bool {
	return strings.HasPrefix(p, "/"+processconnect.ProcessName+"/") || strings.HasPrefix(p, "/"+filesystemconnect.FilesystemName+"/")
}

// deny refuses a data-plane request in the form its route speaks: a
// Connect error for an RPC, envd's {"code", "message"} otherwise.
func deny(w http.ResponseWriter, rpc bool, status int, code connect.Code, msg string) {
	if !rpc {
		writeError(w, status, msg)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code.String(), "message": msg})
}

// basicUser is the user of an "Authorization: Basic user:" header.
func basicUser(r *http.Request) string {
	v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Basic ")
	if !ok {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return ""
	}
	u, _, _ := strings.Cut(string(b), ":")
	return u
}

// rpcError is a domain error as a Connect error of the same class.
func rpcError(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	code := connect.CodeInternal
	switch {
	case cerrdefs.IsNotFound(err):
		code = connect.CodeNotFound
	case cerrdefs.IsInvalidArgument(err):
		code = connect.CodeInvalidArgument
	case cerrdefs.IsAlreadyExists(err):
		code = connect.CodeAlreadyExists
	case cerrdefs.IsConflict(err), cerrdefs.IsFailedPrecondition(err):
		code = connect.CodeFailedPrecondition
	case cerrdefs.IsPermissionDenied(err):
		code = connect.CodePermissionDenied
	case cerrdefs.IsResourceExhausted(err), errors.Is(err, fsapi.ErrNoSpace), errors.Is(err, fsapi.ErrTooLarge):
		code = connect.CodeResourceExhausted
	case cerrdefs.IsUnavailable(err):
		code = connect.CodeUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	}
	return connect.NewError(code, err)
}
