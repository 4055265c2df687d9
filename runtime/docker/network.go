package docker

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/sandboxd/sandboxd/runtime"
)

// EnsureNetwork makes the bridge network of spec exist. With spec.Isolated it
// turns off traffic between its containers and installs host firewall rules so
// that its containers reach neither the host's own services nor link-local
// (cloud metadata) addresses. It is idempotent.
func (d *Docker) EnsureNetwork(ctx context.Context, spec runtime.NetworkSpec) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	d.netMu.Lock()
	defer d.netMu.Unlock()
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
			// Another sandboxd on this engine may have made it meanwhile.
			if _, ierr := d.cli.NetworkInspect(ctx, spec.Name, client.NetworkInspectOptions{}); ierr == nil {
				err = nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("ensure network %s: %w", spec.Name, err)
	}
	if spec.Isolated {
		return isolateBridge(ctx, spec.Bridge)
	}
	return nil
}

// isolateBridge installs, once, the host rules that fence the bridge in:
//   - INPUT: nothing new from the bridge reaches the host itself (sandboxd's port,
//     any other host service, on any host address), over IPv4 or IPv6;
//   - DOCKER-USER: nothing from the bridge reaches 169.254.0.0/16.
//
// Docker already turns IPv6 off inside containers of a network without it; the
// IPv6 rule holds should that change.
func isolateBridge(ctx context.Context, bridge string) error {
	established := []string{"INPUT", "-i", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"}
	drop := []string{"INPUT", "-i", bridge, "-j", "DROP"}
	// Rules are inserted at the top, so each list runs from the last to apply
	// to the first.
	if err := insertRules(ctx, "iptables", drop, established,
		[]string{"DOCKER-USER", "-i", bridge, "-d", "169.254.0.0/16", "-j", "DROP"}); err != nil {
		return err
	}
	if _, err := exec.LookPath("ip6tables"); err == nil {
		return insertRules(ctx, "ip6tables", drop, established)
	}
	return nil
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
