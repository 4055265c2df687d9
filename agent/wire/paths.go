package wire

// Where bothy puts the agent and its socket in every container it makes:
// the binary and the directory holding the socket are bind-mounted read-only.
const (
	BinaryPath = "/.bothy/bin/bothy-agent"
	RunMount   = "/.bothy/run"
	SocketName = "a.sock"
	// SocketEnv tells the agent where to dial (BOTHY_SOCKET).
	SocketEnv = "BOTHY_SOCKET=" + RunMount + "/" + SocketName
	// TokenName is the file beside the socket that holds the agent's token,
	// readable by the agent's uid alone: no secret travels in a container's
	// environment, which a commit, an export or an inspect would carry.
	TokenName = "token"
)
