package orchestrator

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/agent/wire"
)

// transportOf is the agent channel's transport for a new sandbox of spec:
// the configured one, except that a sandbox without a network has no
// address to dial and keeps the socket, unless the runtime's containers
// have no other way in.
func (o *Orchestrator) transportOf(spec Spec) string {
	if o.cfg.NetworkOnly {
		return TransportTCP
	}
	if spec.Network == "none" {
		return TransportUnix
	}
	return o.cfg.Transport
}

// newEndpoint opens sb's agent endpoint on its transport, in its run
// directory dir (which holds its token already), and tells the agent there
// whether to serve the standard runtime interface.
func (o *Orchestrator) newEndpoint(sb *Sandbox, dir string) (*agent.Endpoint, error) {
	log := o.log.With("sandbox_id", sb.ID)
	if err := writeKEP(dir, sb); err != nil {
		return nil, err
	}
	if sb.Spec.Transport != TransportTCP {
		return agent.Listen(filepath.Join(dir, wire.SocketName), sb.token, log)
	}
	ca, err := o.agentCA()
	if err != nil {
		return nil, err
	}
	cr, err := ca.Issue(sb.ID)
	if err != nil {
		return nil, fmt.Errorf("issue agent credentials: %w", err)
	}
	if err := agent.WriteCredentials(dir, cr, o.rootUID); err != nil {
		return nil, err
	}
	id := sb.ID
	return agent.DialTLS(id, func(ctx context.Context) (string, error) { return o.agentAddr(ctx, id) }, ca, cr, sb.token, log), nil
}

// agentAddr is where sandbox id's agent listens now: its container's
// address, which changes when the container starts again or a restore
// replaces it.
func (o *Orchestrator) agentAddr(ctx context.Context, id string) (string, error) {
	sb, err := o.store.get(ctx, id)
	if err != nil {
		return "", err
	}
	c, err := o.rt.Inspect(ctx, sb.ContainerID)
	if err != nil {
		return "", err
	}
	addr := c.Addr
	if c.ControlAddr != "" {
		addr = c.ControlAddr
	}
	if addr == "" {
		return "", fmt.Errorf("the sandbox's container has no address (state %s)", c.State)
	}
	return net.JoinHostPort(addr, strconv.Itoa(wire.AgentPort)), nil
}

// agentCA is the CA of the network transport, kept in the data directory.
func (o *Orchestrator) agentCA() (*agent.CA, error) {
	o.caMu.Lock()
	defer o.caMu.Unlock()
	if o.ca == nil {
		ca, err := agent.OpenCA(filepath.Join(o.cfg.DataDir, "agent-ca"))
		if err != nil {
			return nil, err
		}
		o.ca = ca
	}
	return o.ca, nil
}

// kepRoot is where a sandbox's standard runtime interface keeps its files.
const kepRoot = "/workspace"

// writeKEP writes (or removes) the standard interface's configuration in
// sb's run directory dir: what the agent reads at its start.
func writeKEP(dir string, sb *Sandbox) error {
	if !sb.Spec.KEP {
		return agent.WriteKEP(dir, nil)
	}
	return agent.WriteKEP(dir, &wire.KEPConfig{Root: kepRoot, Metadata: map[string]string{
		"SANDBOX_ID": sb.ID, "SANDBOX_ROOT": kepRoot,
	}})
}
