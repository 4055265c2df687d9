package openapi

import "github.com/bothy/bothy/api"

// op is one operation of the REST API. Path is written as the router has it
// (":id" for a parameter, "*" for the rest of a path).
type op struct {
	Method, Path string
	ID, Summary  string
	Tag          string
	Description  string
	// Public operations need no key; Admin ones need an admin key.
	Public, Admin bool
	// PortToken operations take a port's token instead of a key, or
	// nothing for a public port.
	PortToken bool
	Query     []param
	Headers   []param
	// Body is the JSON request body's Go value; BodyMedia a non-JSON body's
	// media type (application/octet-stream, application/x-tar).
	Body      any
	BodyMedia string
	// Status and Out are the success answer: Out's schema as JSON, or
	// OutMedia's bytes; Streams lists more media types the answer may
	// take on request (Accept).
	Status   int
	Out      any
	OutMedia string
	Streams  map[string]any
	// Also lists other success answers (a replayed create's 200).
	Also map[int]string
	// Socket marks a WebSocket upgrade.
	Socket bool
}

// param is a query parameter or request header.
type param struct {
	Name, Type, Description string
	Required, Repeated      bool
}

func q(name, typ, desc string) param { return param{Name: name, Type: typ, Description: desc} }
func qRequired(name, typ, desc string) param {
	return param{Name: name, Type: typ, Description: desc, Required: true}
}
func qList(name, desc string) param {
	return param{Name: name, Type: "string", Description: desc, Repeated: true}
}

var (
	pathParam  = qRequired("path", "string", "Absolute path in the sandbox.")
	userParam  = q("user", "string", "Act as this user (default: the sandbox's user).")
	ndjsonLog  = map[string]any{"application/x-ndjson": api.LogRecord{}, "text/event-stream": api.LogRecord{}}
	fileEvents = map[string]any{"application/x-ndjson": api.FileEvent{}, "text/event-stream": api.FileEvent{}}
)

// operations is every route of the REST API. The server's tests hold it to
// the router both ways.
var operations = []op{
	{Method: "GET", Path: "/healthz", ID: "healthz", Summary: "Liveness: bothy answers", Tag: "health", Public: true, Status: 200, Out: map[string]string{}},
	{Method: "GET", Path: "/readyz", ID: "readyz", Summary: "Readiness: the engine answers and the images exist (503 when not)", Tag: "health", Public: true, Status: 200, Out: api.Readiness{}, Also: map[int]string{503: "Not ready; the body says why."}},
	{Method: "GET", Path: "/metrics", ID: "metrics", Summary: "Prometheus metrics (admin key; or no key on --metrics-listen)", Tag: "health", Admin: true, Status: 200, OutMedia: "text/plain"},
	{Method: "GET", Path: "/openapi.json", ID: "openapi", Summary: "This document", Tag: "health", Public: true, Status: 200, Out: map[string]any{}},

	{Method: "POST", Path: "/v1/sandboxes", ID: "createSandbox", Summary: "Create a sandbox", Tag: "sandboxes", Body: api.CreateSandboxRequest{}, Status: 201, Out: api.Sandbox{},
		Headers: []param{q("Idempotency-Key", "string", "Retries with the same key return the first answer (200, Idempotent-Replayed: true) instead of a second sandbox.")},
		Also:    map[int]string{200: "A replay of an earlier create with the same Idempotency-Key."}},
	{Method: "GET", Path: "/v1/sandboxes", ID: "listSandboxes", Summary: "List the key's sandboxes", Tag: "sandboxes", Status: 200, Out: api.SandboxList{},
		Query: []param{qList("label", "key=value; every one must match."), q("state", "string", "Only sandboxes in this state."), q("limit", "integer", "Page size, 1 to 1000."), q("cursor", "string", "next_cursor of the previous page.")}},
	{Method: "GET", Path: "/v1/sandboxes/:id", ID: "getSandbox", Summary: "Get a sandbox", Tag: "sandboxes", Status: 200, Out: api.Sandbox{}},
	{Method: "PATCH", Path: "/v1/sandboxes/:id", ID: "updateSandbox", Summary: "Change a sandbox's labels and lifetime", Tag: "sandboxes", Body: api.UpdateSandboxRequest{}, Status: 200, Out: api.Sandbox{}},
	{Method: "DELETE", Path: "/v1/sandboxes/:id", ID: "deleteSandbox", Summary: "Delete a sandbox and everything in it", Tag: "sandboxes", Status: 204},
	{Method: "POST", Path: "/v1/sandboxes/:id/stop", ID: "stopSandbox", Summary: "Stop a sandbox (its filesystem is kept)", Tag: "sandboxes", Status: 200, Out: api.Sandbox{}},
	{Method: "POST", Path: "/v1/sandboxes/:id/start", ID: "startSandbox", Summary: "Start a stopped sandbox", Tag: "sandboxes", Status: 200, Out: api.Sandbox{}},
	{Method: "POST", Path: "/v1/sandboxes/:id/pause", ID: "pauseSandbox", Summary: "Freeze a sandbox's processes", Tag: "sandboxes", Status: 200, Out: api.Sandbox{}},
	{Method: "POST", Path: "/v1/sandboxes/:id/resume", ID: "resumeSandbox", Summary: "Thaw a paused sandbox", Tag: "sandboxes", Status: 200, Out: api.Sandbox{}},

	{Method: "POST", Path: "/v1/sandboxes/:id/exec", ID: "exec", Summary: "Run a command and wait for it", Tag: "exec", Body: api.ExecRequest{}, Status: 200, Out: api.ExecResult{},
		Description: "With Accept: application/x-ndjson the output streams as ExecEvent lines, the last one of type exit.",
		Streams:     map[string]any{"application/x-ndjson": api.ExecEvent{}}},
	{Method: "GET", Path: "/v1/sandboxes/:id/exec", ID: "execSocket", Summary: "Run a command over a WebSocket (stdin in binary frames, output as ExecEvent text frames)", Tag: "exec", Socket: true,
		Query: []param{qList("cmd", "Argument vector, one per parameter."), q("shell", "string", "A line for /bin/sh -c, instead of cmd."), qList("env", "KEY=VALUE."), q("cwd", "string", ""), userParam, q("timeout_ms", "integer", "")}},

	{Method: "GET", Path: "/v1/sandboxes/:id/files", ID: "readFile", Summary: "Read a file (a byte range with Range or offset/length), or list a directory", Tag: "files", Status: 200, Out: api.DirList{},
		Description: "A file answers with its bytes (application/octet-stream; 206 for a range); a directory with a DirList.",
		Streams:     map[string]any{"application/octet-stream": nil},
		Also:        map[int]string{206: "A byte range of the file."},
		Query: []param{pathParam, userParam, q("recursive", "boolean", "List a directory's tree."), q("depth", "integer", "How deep a recursive listing goes."),
			q("offset", "integer", "First byte to read."), q("length", "integer", "How many bytes to read.")},
		Headers: []param{q("Range", "string", "bytes=FROM-TO")}},
	{Method: "PUT", Path: "/v1/sandboxes/:id/files", ID: "writeFile", Summary: "Write a file atomically from the raw body", Tag: "files", BodyMedia: "application/octet-stream", Status: 200, Out: api.FileInfo{},
		Query: []param{pathParam, userParam, q("mode", "string", "Octal permission bits, default 0644."), q("parents", "boolean", "Create missing parent directories.")}},
	{Method: "DELETE", Path: "/v1/sandboxes/:id/files", ID: "removeFile", Summary: "Remove a file or directory", Tag: "files", Status: 204,
		Query: []param{pathParam, userParam, q("recursive", "boolean", "Remove a directory and what it holds.")}},
	{Method: "GET", Path: "/v1/sandboxes/:id/files/stat", ID: "statFile", Summary: "Describe a file", Tag: "files", Status: 200, Out: api.FileInfo{}, Query: []param{pathParam, userParam}},
	{Method: "GET", Path: "/v1/sandboxes/:id/files/watch", ID: "watchFiles", Summary: "Stream file events under a path", Tag: "files", Status: 200, OutMedia: "application/x-ndjson", Streams: fileEvents,
		Query: []param{pathParam, userParam, q("recursive", "boolean", ""), q("from", "integer", "Resume after this event's seq.")}},
	{Method: "POST", Path: "/v1/sandboxes/:id/files/mkdir", ID: "mkdir", Summary: "Make a directory", Tag: "files", Body: api.MkdirRequest{}, Status: 200, Out: api.FileInfo{}, Query: []param{userParam}},
	{Method: "POST", Path: "/v1/sandboxes/:id/files/move", ID: "move", Summary: "Move or rename a file", Tag: "files", Body: api.MoveRequest{}, Status: 200, Out: api.FileInfo{}, Query: []param{userParam}},
	{Method: "POST", Path: "/v1/sandboxes/:id/files/chmod", ID: "chmod", Summary: "Change a file's permission bits", Tag: "files", Body: api.ChmodRequest{}, Status: 200, Out: api.FileInfo{}, Query: []param{userParam}},
	{Method: "GET", Path: "/v1/sandboxes/:id/archive", ID: "downloadArchive", Summary: "Download a directory as a tar stream", Tag: "files", Status: 200, OutMedia: "application/x-tar", Query: []param{pathParam, userParam}},
	{Method: "PUT", Path: "/v1/sandboxes/:id/archive", ID: "uploadArchive", Summary: "Unpack a tar stream into a directory", Tag: "files", BodyMedia: "application/x-tar", Status: 200, Out: api.ArchiveResult{}, Query: []param{pathParam, userParam}},

	{Method: "GET", Path: "/v1/sandboxes/:id/pty", ID: "ptySocket", Summary: "Open or reattach a terminal over a WebSocket", Tag: "terminals", Socket: true,
		Description: "Authenticated with the key, or a ticket from POST .../pty/tickets and a same-origin Origin. Binary frames carry the terminal's bytes; text frames carry PtyMessage.",
		Query: []param{q("ticket", "string", "A single-use ticket (browsers)."), q("session", "string", "Reattach this session."), q("replay", "boolean", "Replay recent output on reattach (default true)."),
			qList("cmd", "Argument vector (default: a login shell)."), qList("env", "KEY=VALUE."), q("cwd", "string", ""), userParam, q("cols", "integer", ""), q("rows", "integer", ""),
			q("idle_timeout_s", "integer", "End the session after this long with no viewer.")}},
	{Method: "POST", Path: "/v1/sandboxes/:id/pty/tickets", ID: "ptyTicket", Summary: "Get a single-use ticket to open a terminal from a browser", Tag: "terminals", Status: 201, Out: api.Ticket{}},
	{Method: "GET", Path: "/v1/sandboxes/:id/pty/sessions", ID: "listPtySessions", Summary: "List a sandbox's terminal sessions", Tag: "terminals", Status: 200, Out: api.PtySessionList{}},
	{Method: "DELETE", Path: "/v1/sandboxes/:id/pty/sessions/:session", ID: "killPtySession", Summary: "End a terminal session", Tag: "terminals", Status: 204},

	{Method: "POST", Path: "/v1/sandboxes/:id/processes", ID: "startProcess", Summary: "Start a background process", Tag: "processes", Body: api.StartProcessRequest{}, Status: 201, Out: api.Process{}},
	{Method: "GET", Path: "/v1/sandboxes/:id/processes", ID: "listProcesses", Summary: "List a sandbox's background processes", Tag: "processes", Status: 200, Out: api.ProcessList{}, Query: []param{q("tag", "string", "Only processes with this tag.")}},
	{Method: "GET", Path: "/v1/sandboxes/:id/processes/:pid", ID: "getProcess", Summary: "Get a background process", Tag: "processes", Status: 200, Out: api.Process{}},
	{Method: "DELETE", Path: "/v1/sandboxes/:id/processes/:pid", ID: "killProcess", Summary: "Kill a process's group", Tag: "processes", Status: 200, Out: api.Process{}},
	{Method: "GET", Path: "/v1/sandboxes/:id/processes/:pid/logs", ID: "processLogs", Summary: "Read (and follow) a process's output", Tag: "processes", Status: 200, OutMedia: "application/x-ndjson", Streams: ndjsonLog,
		Query: []param{q("from", "integer", "Byte offset to start at."), q("follow", "boolean", "Keep streaming until the process ends."), q("stream", "string", "stdout, stderr or both.")}},
	{Method: "GET", Path: "/v1/sandboxes/:id/processes/:pid/wait", ID: "waitProcess", Summary: "Wait for a process to end", Tag: "processes", Status: 200, Out: api.Process{}, Query: []param{q("timeout_ms", "integer", "")}},
	{Method: "POST", Path: "/v1/sandboxes/:id/processes/:pid/signal", ID: "signalProcess", Summary: "Send a signal to a process's group", Tag: "processes", Body: api.SignalRequest{}, Status: 200, Out: api.Process{}},
	{Method: "POST", Path: "/v1/sandboxes/:id/processes/:pid/stdin", ID: "writeStdin", Summary: "Write the raw body to a process's stdin", Tag: "processes", BodyMedia: "application/octet-stream", Status: 200, Out: api.Process{}},
	{Method: "POST", Path: "/v1/sandboxes/:id/processes/:pid/stdin/close", ID: "closeStdin", Summary: "Close a process's stdin", Tag: "processes", Status: 200, Out: api.Process{}},

	{Method: "POST", Path: "/v1/sandboxes/:id/ports", ID: "exposePort", Summary: "Expose a port of the sandbox over HTTP", Tag: "ports", Body: api.ExposePortRequest{}, Status: 201, Out: api.ExposedPort{}},
	{Method: "GET", Path: "/v1/sandboxes/:id/ports", ID: "listPorts", Summary: "List exposed ports", Tag: "ports", Status: 200, Out: api.PortList{}},
	{Method: "DELETE", Path: "/v1/sandboxes/:id/ports/:port", ID: "unexposePort", Summary: "Stop exposing a port", Tag: "ports", Status: 204},
	{Method: "GET", Path: "/v1/sandboxes/:id/ports/:port/wait", ID: "waitPort", Summary: "Wait until something listens on a port", Tag: "ports", Status: 204, Query: []param{q("timeout_ms", "integer", "")}},
	{Method: "ANY", Path: "/v1/sandboxes/:id/ports/:port/*", ID: "proxyPort", Summary: "A request to the server on an exposed port (path form)", Tag: "ports", Status: 200, PortToken: true, OutMedia: "*/*", BodyMedia: "*/*",
		Description: "Any method. The rest of the path goes to the sandbox's server as is; 502 not_listening when nothing listens. Takes the owner's API key, or without one the port's token (X-Bothy-Port-Token header or bothy_token query parameter), or nothing for a public port."},

	{Method: "POST", Path: "/v1/sandboxes/:id/snapshots", ID: "createSnapshot", Summary: "Checkpoint a sandbox's filesystem", Tag: "snapshots", Body: api.CreateSnapshotRequest{}, Status: 201, Out: api.Snapshot{}},
	{Method: "POST", Path: "/v1/sandboxes/:id/restore", ID: "restoreSandbox", Summary: "Restore a snapshot into a sandbox (whole, or only some paths)", Tag: "snapshots", Body: api.RestoreRequest{}, Status: 200, Out: api.Sandbox{}},
	{Method: "POST", Path: "/v1/sandboxes/:id/fork", ID: "forkSandbox", Summary: "Make 1 to 16 new sandboxes from a sandbox's filesystem as it is now", Tag: "snapshots",
		Description: "One checkpoint, then the creates, all or nothing. The new sandboxes have the source's limits, environment, user, working directory and lifetime, and the labels given.",
		Body:        api.ForkRequest{}, Status: 201, Out: api.ForkResult{}},
	{Method: "GET", Path: "/v1/snapshots", ID: "listSnapshots", Summary: "List the key's snapshots", Tag: "snapshots", Status: 200, Out: api.SnapshotList{}, Query: []param{q("sandbox", "string", "Only this sandbox's snapshots.")}},
	{Method: "GET", Path: "/v1/snapshots/:id", ID: "getSnapshot", Summary: "Get a snapshot", Tag: "snapshots", Status: 200, Out: api.Snapshot{}},
	{Method: "DELETE", Path: "/v1/snapshots/:id", ID: "deleteSnapshot", Summary: "Delete a snapshot", Tag: "snapshots", Status: 204},
	{Method: "GET", Path: "/v1/snapshots/:id/export", ID: "exportSnapshot", Summary: "Export a snapshot as a portable tar stream", Tag: "snapshots", Status: 200, OutMedia: "application/x-tar"},
	{Method: "GET", Path: "/v1/snapshots/:id/diff", ID: "diffSnapshot", Summary: "What differs between a snapshot and a sandbox or another snapshot", Tag: "snapshots", Status: 200, Out: api.Diff{},
		Query: []param{qRequired("to", "string", "A snapshot ID, or a sandbox ID (as it is now).")}},
	{Method: "POST", Path: "/v1/snapshots/import", ID: "importSnapshot", Summary: "Import an exported snapshot", Tag: "snapshots", BodyMedia: "application/x-tar", Status: 201, Out: api.Snapshot{}},

	{Method: "POST", Path: "/v1/run", ID: "run", Summary: "Run code in a warm, locked-down runner", Tag: "run", Body: api.RunRequest{}, Status: 200, Out: api.RunResult{}},
	{Method: "GET", Path: "/v1/pools", ID: "listPools", Summary: "The runner pools (admin)", Tag: "run", Admin: true, Status: 200, Out: api.PoolList{}},
	{Method: "GET", Path: "/v1/routes", ID: "listRoutes", Summary: "The route table: every route of every front door and its bounds (admin)", Tag: "health", Admin: true, Status: 200, Out: api.RouteList{},
		Description: "Every request bothy serves (REST, WebSockets, MCP, E2B's control and data planes) is routed through this one table; each route's class sets its body limit, whether the body is read whole, and whether the answer streams."},
	{Method: "GET", Path: "/v1/apps", ID: "listApps", Summary: "List the key's apps", Tag: "apps", Status: 200, Out: api.AppList{}},
	{Method: "PUT", Path: "/v1/apps/:name", ID: "deployApp", Summary: "Deploy a new version of an app", Tag: "apps", Body: api.DeployAppRequest{}, Status: 201, Out: api.App{}, Also: map[int]string{200: "A new version of an existing app."}},
	{Method: "GET", Path: "/v1/apps/:name", ID: "getApp", Summary: "Get an app, with its code", Tag: "apps", Status: 200, Out: api.App{}},
	{Method: "DELETE", Path: "/v1/apps/:name", ID: "deleteApp", Summary: "Delete an app and its database", Tag: "apps", Status: 204},
	{Method: "GET", Path: "/v1/apps/:name/logs", ID: "appLogs", Summary: "An app's recent requests, newest first", Tag: "apps", Status: 200, Out: api.LogList{}, Query: []param{q("limit", "integer", "1 to 1000, default 100.")}},
	{Method: "ANY", Path: "/v1/apps/:name/invoke", ID: "invokeApp", Summary: "Send a request to an app", Tag: "apps", Status: 200, OutMedia: "*/*", BodyMedia: "*/*", Description: "Any method; the app's answer comes back as it gave it."},
	{Method: "ANY", Path: "/v1/apps/:name/invoke/*", ID: "invokeAppPath", Summary: "Send a request to a path of an app", Tag: "apps", Status: 200, OutMedia: "*/*", BodyMedia: "*/*", Description: "Any method; the rest of the path is the app's."},
	{Method: "GET", Path: "/v1/usage", ID: "usage", Summary: "Metered use by hour", Tag: "apps", Status: 200, Out: api.Usage{},
		Query: []param{q("since", "string", "RFC 3339 time (default: a day ago)."), q("all", "boolean", "Every key's use (admin).")}},

	{Method: "GET", Path: "/v1/images", ID: "listImages", Summary: "List images sandboxes can run on", Tag: "images", Status: 200, Out: api.ImageList{}},
	{Method: "POST", Path: "/v1/images", ID: "buildImage", Summary: "Build a built-in image (admin); progress as NDJSON", Tag: "images", Admin: true, Body: api.BuildImageRequest{}, Status: 200, OutMedia: "application/x-ndjson",
		Streams: map[string]any{"application/x-ndjson": api.BuildEvent{}}},
	{Method: "DELETE", Path: "/v1/images/*", ID: "removeImage", Summary: "Remove an image (admin)", Tag: "images", Admin: true, Status: 204},

	{Method: "POST", Path: "/v1/keys", ID: "createKey", Summary: "Create an API key (admin); its secret is shown once", Tag: "keys", Admin: true, Body: api.CreateKeyRequest{}, Status: 201, Out: api.CreatedKey{}},
	{Method: "GET", Path: "/v1/keys", ID: "listKeys", Summary: "List API keys (admin)", Tag: "keys", Admin: true, Status: 200, Out: api.KeyList{}},
	{Method: "PATCH", Path: "/v1/keys/:id", ID: "updateKey", Summary: "Set a key's quota (admin)", Tag: "keys", Admin: true, Body: api.UpdateKeyRequest{}, Status: 200, Out: api.Key{}},
	{Method: "DELETE", Path: "/v1/keys/:id", ID: "revokeKey", Summary: "Revoke a key (admin)", Tag: "keys", Admin: true, Status: 204},
}
