package docker

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/bothy/bothy/runtime"
)

// netMu serialises, in this process, the changes to networks and to the
// host's firewall rules, whichever client makes them.
var netMu sync.Mutex

// EnsureNetwork makes the bridge network of spec exist. With spec.Isolated it
// turns off traffic between its containers and installs host firewall rules so
// that its containers reach neither the host's own services nor link-local
// (cloud metadata) addresses. It is idempotent.
func (d *Docker) EnsureNetwork(ctx context.Context, spec runtime.NetworkSpec) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	netMu.Lock()
	defer netMu.Unlock()
	_, err := d.cli.NetworkInspect(ctx, spec.Name, client.NetworkInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		opts := map[string]string{"com.docker.network.bridge.name": spec.Bridge}
		if spec.Isolated {
			opts["com.docker.network.bridge.enable_icc"] = "false"
		}
		_, err = d.cli.NetworkCreate(ctx, spec.Name, client.NetworkCreateOptions{
			Driver: "bridge", Options: opts, Labels: spec.Labels,
		})
		if err != nil {
			// Another bothy on this engine may have made it meanwhile.
			if _, ierr := d.cli.NetworkInspect(ctx, spec.Name, client.NetworkInspectOptions{}); ierr == nil {
				err = nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("ensure network %s: %w", spec.Name, err)
	}
	if spec.Isolated {
		return isolateBridge(ctx, spec)
	}
	return nil
}

// RemoveNetwork removes a network no container uses, and the host rules
// EnsureNetwork installed for its bridge.
func (d *Docker) RemoveNetwork(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	netMu.Lock()
	defer netMu.Unlock()
	n, err := d.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	if err != nil {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	if _, err := d.cli.NetworkRemove(ctx, name, client.NetworkRemoveOptions{}); err != nil {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	if bridge := n.Network.Options["com.docker.network.bridge.name"]; bridge != "" {
		unfenceBridge(ctx, bridge)
	}
	return nil
}

// unfenceBridge removes the host rules isolateBridge installed for bridge,
// those that are there.
func unfenceBridge(ctx context.Context, bridge string) {
	chain := "BOTHY-" + bridge
	for bin, parent := range map[string]string{"iptables": "DOCKER-USER", "ip6tables": "FORWARD"} {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		for _, r := range [][]string{
			{"INPUT", "-i", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
			{"INPUT", "-i", bridge, "-j", "DROP"},
			{parent, "-i", bridge, "-j", chain},
		} {
			for exec.CommandContext(ctx, bin, append([]string{"-w", "-C"}, r...)...).Run() == nil {
				if exec.CommandContext(ctx, bin, append([]string{"-w", "-D"}, r...)...).Run() != nil {
					break
				}
			}
		}
		_ = exec.CommandContext(ctx, bin, "-w", "-F", chain).Run()
		_ = exec.CommandContext(ctx, bin, "-w", "-X", chain).Run()
	}
}

// Networks lists, by name, the networks that carry all of labels.
func (d *Docker) Networks(ctx context.Context, labels map[string]string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	f := client.Filters{}
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	res, err := d.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	out := make([]string, 0, len(res.Items))
	for _, n := range res.Items {
		out = append(out, n.Name)
	}
	return out, nil
}

// isolateBridge installs the host rules that fence the bridge in:
//   - INPUT: nothing new from the bridge reaches the host itself (bothy's port,
//     any other host service, on any host address), over IPv4 or IPv6;
//   - a chain of the bridge's own, jumped to from DOCKER-USER (IPv4) and
//     FORWARD (IPv6) for traffic from the bridge, rebuilt on every call: the
//     Allowed ranges return, the Blocked ones are dropped.
//
// Docker already turns IPv6 off inside containers of a network without it; the
// IPv6 rules hold should that change.
func isolateBridge(ctx context.Context, spec runtime.NetworkSpec) error {
	bridge := spec.Bridge
	established := []string{"INPUT", "-i", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"}
	drop := []string{"INPUT", "-i", bridge, "-j", "DROP"}
	chain := "BOTHY-" + bridge
	var v4, v6 []string
	for _, r := range spec.Blocked {
		if strings.Contains(r, ":") {
			v6 = append(v6, r)
		} else {
			v4 = append(v4, r)
		}
	}
	// Rules are inserted at the top, so each list runs from the last to apply
	// to the first.
	if err := insertRules(ctx, "iptables", drop, established); err != nil {
		return err
	}
	if err := fillChain(ctx, "iptables", chain, spec.Allowed, v4, "DOCKER-USER", bridge); err != nil {
		return err
	}
	if _, err := exec.LookPath("ip6tables"); err == nil {
		if err := insertRules(ctx, "ip6tables", drop, established); err != nil {
			return err
		}
		return fillChain(ctx, "ip6tables", chain, spec.Allowed, v6, "FORWARD", bridge)
	}
	return nil
}

// fillChain makes chain (empty), fills it with a RETURN for each allowed range
// of its family and a DROP for each blocked one, and jumps to it from parent
// for traffic that comes in on bridge.
func fillChain(ctx context.Context, bin, chain string, allowed, blocked []string, parent, bridge string) error {
	run := func(args ...string) error {
		out, err := exec.CommandContext(ctx, bin, append([]string{"-w"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if exec.CommandContext(ctx, bin, "-w", "-n", "-L", chain).Run() != nil {
		// Another process (another bothy on this host) may make it
		// meanwhile: what counts is that it exists.
		if err := run("-N", chain); err != nil && exec.CommandContext(ctx, bin, "-w", "-n", "-L", chain).Run() != nil {
			return err
		}
	}
	if err := run("-F", chain); err != nil {
		return err
	}
	v6 := bin == "ip6tables"
	for _, r := range allowed {
		if strings.Contains(r, ":") == v6 {
			if err := run("-A", chain, "-d", r, "-j", "RETURN"); err != nil {
				return err
			}
		}
	}
	for _, r := range blocked {
		if err := run("-A", chain, "-d", r, "-j", "DROP"); err != nil {
			return err
		}
	}
	return insertRules(ctx, bin, []string{parent, "-i", bridge, "-j", chain})
}

// insertRules inserts each rule at the top of its chain unless it is there.
func insertRules(ctx context.Context, bin string, rules ...[]string) error {
	for _, r := range rules {
		check := append([]string{"-w", "-C"}, r...)
		if exec.CommandContext(ctx, bin, check...).Run() == nil {
			continue
		}
		insert := append([]string{"-w", "-I"}, r...)
		if out, err := exec.CommandContext(ctx, bin, insert...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %w: %s", bin, strings.Join(insert, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
