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

// The network transport: instead of dialling the socket, the agent listens
// on TCP and bothy dials it, both ends proving who they are with mutual TLS.
// bothy writes these files beside the token (docs/security.md).
const (
	// ListenName holds the TCP port the agent listens on; the agent takes
	// the network transport when the file exists.
	ListenName = "listen"
	// CertName is the agent's certificate, KeyName its key (readable by the
	// agent's uid alone) and CAName the CA that signs bothy's certificates.
	CertName = "agent.pem"
	KeyName  = "agent-key.pem"
	CAName   = "ca.pem"
	// AgentPort is the port the agent listens on inside the sandbox.
	AgentPort = 49980
)

// KEPName, beside the token, asks the agent to serve the standard runtime
// interface of agent-sandbox (KEP-539.2) on the sandbox's loopback: its
// JSON is a KEPConfig.
const KEPName = "kep"

// KEPConfig is what bothy tells the agent of the standard interface: the
// root files and working directories are confined to, and what
// /v1/metadata tells (nothing secret: code in the sandbox reads it).
type KEPConfig struct {
	Root     string            `json:"root"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// On a cluster, the agent, as PID 1 of the sandbox's container, contains
// its pod before any other process starts, and then gives up the
// capabilities that let it (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SETPCAP).
// GuardEnv, where no init container installs the pod's network rules,
// holds them, as the arguments of "bothy-agent init-pod" separated by
// spaces; HostIPsEnv the node's addresses, which those arguments name as
// $(BOTHY_HOST_IPS); ReadOnlyEnv the files, separated by spaces, that the
// node binds into the container writable, which the agent makes read-only.
// The agent removes them all from its environment.
const (
	GuardEnv    = "BOTHY_GUARD"
	HostIPsEnv  = "BOTHY_HOST_IPS"
	ReadOnlyEnv = "BOTHY_READONLY"
)

// PodFiles are the files that a cluster binds into every container from its
// node's own disk, writable, outside the container's disk limit: the
// runtime's resolver and host name files, the kubelet's hosts file and
// termination log. Root in a sandbox could fill the node's disk through any
// of them; the agent makes them read-only (ReadOnlyEnv).
var PodFiles = []string{"/etc/resolv.conf", "/etc/hosts", "/etc/hostname", TerminationLog}

// TerminationLog is where a sandbox's pod has the kubelet's termination log.
const TerminationLog = "/dev/termination-log"
