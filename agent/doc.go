// Package agent is the channel between bothy and the bothy-agent that runs as
// PID 1 in every sandbox container.
//
// The agent dials a unix socket that bothy listens on (one socket per sandbox, in
// a directory bind-mounted read-only into that container), proves which sandbox it
// belongs to with a token, and then serves requests over a yamux session: bothy
// opens one stream per operation. On a stream, both sides speak small frames (see
// frame.go): a JSON request, then data frames (stdin, stdout, stderr) and a JSON
// result.
//
// Everything the agent says is untrusted, because code inside the sandbox can dial
// the socket itself: frames are bounded, and a connection only ever acts for the one
// sandbox its socket belongs to.
//
// The package holds both ends: Serve and Dial are used by cmd/bothy-agent, Listen
// and Conn by bothy.
package agent
