// Package server is the bothy-agent's side of the channel: it serves the
// operations of package wire (commands, files, terminals, processes, ports,
// runs) inside a sandbox, over the session it makes with bothy. It is used
// by cmd/bothy-agent, and by tests that serve an agent in process.
package server
