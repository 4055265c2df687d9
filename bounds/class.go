package bounds

import "net/http"

// Class is what a route may hold for one request; every route is registered
// with one (the server's route table refuses a route without).
type Class struct {
	// Name says which class in tables and refusals: "none", "json",
	// "stream", "app", "stdin", "socket", "proxy".
	Name string
	// Body is the most bytes of request body the route reads; past it the
	// request is refused (413), before anything is read when the size is
	// declared.
	Body int64
	// Whole says the body is read whole into memory (a JSON document): it
	// is reserved from the body budget before it is read. Otherwise the
	// handler streams it on, a bounded buffer at a time.
	Whole bool
	// Stream says the answer is streamed (or the connection upgraded), so
	// the request may last as long as the client keeps up.
	Stream bool
}

// Kinds of class a Mount names; the server turns each into a Class with its
// configured limits.
const (
	KindNone   = "none"   // no body; a JSON answer
	KindJSON   = "json"   // a JSON body read whole; a JSON answer
	KindStream = "stream" // a body streamed on; an answer that may stream
	KindRPC    = "rpc"    // a bounded body read whole; an answer that may stream
)

// Mount is a route of a front door other than the REST API (MCP, E2B's
// planes): the server serves it in its one route table, under the same
// bounds as its own routes.
type Mount struct {
	// Method is the route's method, "" for any.
	Method string
	// Path is a route path of the server's router ("/mcp", "/sandboxes/*").
	// With Header set, it is a path prefix instead ("" for any path).
	Path string
	// Header, when set, routes every request that carries this header to
	// the mount, whatever its path, before the router sees it.
	Header string
	// Body, when set, is the route's body limit instead of its kind's.
	Body int64
	// Kind is the route's class.
	Kind string
	// Auth has the server authenticate the request's bearer key first and
	// hand it on in the request's context.
	Auth    bool
	Handler http.Handler
}
