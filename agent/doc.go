// Package agent is bothy's side of the channel to the bothy-agent that
// runs as PID 1 in every sandbox container: the endpoint a sandbox's agent
// connects through (Endpoint) and the client of its operations (Conn).
//
// The agent dials a unix socket that bothy listens on (one socket per sandbox, in
// a directory bind-mounted read-only into that container), proves which sandbox it
// belongs to with a token, and then serves requests over a yamux session: bothy
// opens one stream per operation. What travels on a stream is package wire's; the
// agent's side is package server.
//
// Everything the agent says is untrusted, because code inside the sandbox can dial
// the socket itself: frames are bounded, and a connection only ever acts for the one
// sandbox its socket belongs to.
package agent
