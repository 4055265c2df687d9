package e2b

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"connectrpc.com/connect"
	cerrdefs "github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/bothy/bothy/compat/e2b/envd/filesystem"
	"github.com/bothy/bothy/compat/e2b/envd/filesystem/filesystemconnect"
	"github.com/bothy/bothy/fsapi"
)

// filesystemServer is envd's filesystem.Filesystem over fsapi: the
// operations run through the sandbox's agent as the acting user.
type filesystemServer struct {
	filesystemconnect.UnimplementedFilesystemHandler
	s *Service
}

func (f *filesystemServer) files() *fsapi.Service { return f.s.d.Files }

// entryOf is a file's description as envd gives it.
func entryOf(fi fsapi.FileInfo) *pb.EntryInfo {
	e := &pb.EntryInfo{Name: fi.Name, Path: fi.Path, Size: fi.Size, Mode: fi.Mode & 0o7777,
		Permissions: permissions(fi), ModifiedTime: timestamppb.New(fi.MTime), Owner: fi.Owner, Group: fi.Group}
	switch fi.Type {
	case fsapi.TypeFile:
		e.Type = pb.FileType_FILE_TYPE_FILE
	case fsapi.TypeDir:
		e.Type = pb.FileType_FILE_TYPE_DIRECTORY
	case fsapi.TypeSymlink:
		e.Type = pb.FileType_FILE_TYPE_SYMLINK
		target := fi.Target
		e.SymlinkTarget = &target
	}
	return e
}

// permissions is ls's mode string of fi ("drwxr-xr-x").
func permissions(fi fsapi.FileInfo) string {
	m := fs.FileMode(fi.Mode & 0o777)
	switch fi.Type {
	case fsapi.TypeDir:
		m |= fs.ModeDir
	case fsapi.TypeSymlink:
		m |= fs.ModeSymlink
	}
	s := m.String()
	if fi.Type == fsapi.TypeSymlink {
		s = "l" + s[1:]
	}
	return s
}

func (f *filesystemServer) Stat(ctx context.Context, req *connect.Request[pb.StatRequest]) (*connect.Response[pb.StatResponse], error) {
	t := targetOf(ctx)
	fi, err := f.files().Stat(ctx, t.files(), inHome(req.Msg.Path))
	if err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.StatResponse{Entry: entryOf(fi)}), nil
}

// MakeDir makes a directory and its parents; one that is there already is
// already_exists (the SDK's makeDir answers false).
func (f *filesystemServer) MakeDir(ctx context.Context, req *connect.Request[pb.MakeDirRequest]) (*connect.Response[pb.MakeDirResponse], error) {
	t := targetOf(ctx)
	p := inHome(req.Msg.Path)
	if fi, err := f.files().Stat(ctx, t.files(), p); err == nil {
		if fi.Type == fsapi.TypeDir {
			return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("directory already exists: %s", p))
		}
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path already exists and is not a directory: %s", p))
	} else if !cerrdefs.IsNotFound(err) {
		return nil, rpcError(err)
	}
	fi, err := f.files().Mkdir(ctx, t.files(), p, 0o755, true)
	if err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.MakeDirResponse{Entry: entryOf(fi)}), nil
}

func (f *filesystemServer) Move(ctx context.Context, req *connect.Request[pb.MoveRequest]) (*connect.Response[pb.MoveResponse], error) {
	t := targetOf(ctx)
	fi, err := f.files().Move(ctx, t.files(), inHome(req.Msg.Source), inHome(req.Msg.Destination), true)
	if err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.MoveResponse{Entry: entryOf(fi)}), nil
}

// errNotDir stops a listing of what turns out to be a file.
var errNotDir = cerrdefs.ErrInvalidArgument.WithMessage("path is not a directory")

// ListDir lists a directory down to depth levels (1: its entries).
func (f *filesystemServer) ListDir(ctx context.Context, req *connect.Request[pb.ListDirRequest]) (*connect.Response[pb.ListDirResponse], error) {
	t := targetOf(ctx)
	depth := max(int(req.Msg.Depth), 1)
	l, err := f.files().Read(ctx, t.files(), fsapi.ReadOptions{Path: inHome(req.Msg.Path), Length: -1, Recursive: depth > 1, Depth: depth},
		func(fsapi.FileInfo) (io.Writer, error) { return nil, errNotDir })
	if err != nil {
		return nil, rpcError(err)
	}
	out := &pb.ListDirResponse{}
	if l != nil {
		for _, fi := range l.Entries {
			out.Entries = append(out.Entries, entryOf(fi))
		}
	}
	return connect.NewResponse(out), nil
}

// Remove removes a file or a whole directory; a path that is not there is
// removed already.
func (f *filesystemServer) Remove(ctx context.Context, req *connect.Request[pb.RemoveRequest]) (*connect.Response[pb.RemoveResponse], error) {
	t := targetOf(ctx)
	if err := f.files().Remove(ctx, t.files(), inHome(req.Msg.Path), true); err != nil && !cerrdefs.IsNotFound(err) {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.RemoveResponse{}), nil
}

// WatchDir streams the events under a directory: a start event first (the
// SDK waits for it), then one event per change, with names relative to the
// directory.
func (f *filesystemServer) WatchDir(ctx context.Context, req *connect.Request[pb.WatchDirRequest], stream *connect.ServerStream[pb.WatchDirResponse]) error {
	t := targetOf(ctx)
	fi, err := f.files().Stat(ctx, t.files(), inHome(req.Msg.Path))
	if err != nil {
		return rpcError(err)
	}
	if fi.Type != fsapi.TypeDir {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path is not a directory: %s", fi.Path))
	}
	// The agent answers where the path is in the sandbox.
	dir := fi.Path
	rel := func(p string) string {
		if name := strings.TrimPrefix(strings.TrimPrefix(p, dir), "/"); name != "" {
			return name
		}
		return path.Base(p)
	}
	send := func(name string, typ pb.EventType) error {
		return stream.Send(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Filesystem{Filesystem: &pb.FilesystemEvent{Name: name, Type: typ}}})
	}
	err = f.files().Watch(ctx, t.files(), fsapi.WatchOptions{Path: dir, Recursive: req.Msg.Recursive}, func(ev fsapi.Event) error {
		switch ev.Type {
		case fsapi.EventReady:
			return stream.Send(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Start{Start: &pb.WatchDirResponse_StartEvent{}}})
		case "rename":
			// As inotify tells it: the old name goes, the new one comes.
			if ev.From != "" {
				if err := send(rel(ev.From), pb.EventType_EVENT_TYPE_RENAME); err != nil {
					return err
				}
			}
			return send(rel(ev.Path), pb.EventType_EVENT_TYPE_CREATE)
		}
		if typ, ok := eventTypes[ev.Type]; ok {
			return send(rel(ev.Path), typ)
		}
		return nil
	})
	return rpcError(err)
}

// eventTypes maps bothy's watch events to envd's.
var eventTypes = map[string]pb.EventType{
	"create": pb.EventType_EVENT_TYPE_CREATE,
	"write":  pb.EventType_EVENT_TYPE_WRITE,
	"remove": pb.EventType_EVENT_TYPE_REMOVE,
	"chmod":  pb.EventType_EVENT_TYPE_CHMOD,
}
