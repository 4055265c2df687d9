// Package guard installs a sandbox's network rules in its own network
// namespace, with nftables, from a process that may (CAP_NET_ADMIN) before
// any of the sandbox's processes start, which may not. It is how a sandbox on
// a cluster is contained whatever the cluster's network enforces: an init
// container of its pod runs it (bothy-agent init-pod), or the agent itself
// as the pod's PID 1, which then drops the capabilities that allowed it
// (DropCaps).
//
// The rules, in the table inet bothy-guard:
//   - out: loopback and replies always; nothing else without a network;
//     with one, DNS to the resolvers given, never the node's own
//     addresses, then the allowed ranges, and every other address except
//     the blocked ranges;
//   - in: loopback, replies, and the agent's port; nothing else (a
//     sandbox's servers are reached through its agent).
package guard

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Table is the nftables table the rules live in.
const Table = "bothy-guard"

// Rules is what a sandbox may reach.
type Rules struct {
	// None: no network, only replies to what reaches the agent.
	None bool
	// Blocked are the ranges not reached, unless a range of Allowed holds
	// the address; Host are the node's addresses, never reached.
	Blocked, Allowed []netip.Prefix
	Host             []netip.Addr
	// DNS are the resolvers reached on port 53 although blocked.
	DNS []netip.Addr
	// AgentPort is the one port reached from outside.
	AgentPort uint16
}

// Install replaces the table's rules with r's, in one transaction.
func Install(r Rules) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: Table, Family: nftables.TableFamilyINet}
	// Adding the table first makes the delete valid on a first install;
	// the delete then empties it of any earlier rules.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	drop, accept := nftables.ChainPolicyDrop, nftables.ChainPolicyAccept
	outPolicy := &accept
	if r.None {
		outPolicy = &drop
	}
	out := c.AddChain(&nftables.Chain{Name: "out", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: outPolicy})
	in := c.AddChain(&nftables.Chain{Name: "in", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	rule := func(ch *nftables.Chain, exprs ...expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	acceptV := &expr.Verdict{Kind: expr.VerdictAccept}
	rejectV := &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}

	rule(out, append(ifname(expr.MetaKeyOIFNAME, "lo"), acceptV)...)
	rule(out, append(established(), acceptV)...)
	rule(in, append(ifname(expr.MetaKeyIIFNAME, "lo"), acceptV)...)
	rule(in, append(established(), acceptV)...)
	rule(in, append(tcpPort(r.AgentPort), acceptV)...)
	// IPv6 finds its neighbours with ICMPv6, which conntrack does not
	// count as a reply.
	rule(in, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}}, acceptV)
	if !r.None {
		rule(out, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}}, acceptV)
		for _, a := range r.DNS {
			for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
				e := append(daddr(netip.PrefixFrom(a, a.BitLen())), &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, 53)}, acceptV)
				rule(out, e...)
			}
		}
		// The node first: no allowed range opens it.
		for _, a := range r.Host {
			rule(out, append(daddr(netip.PrefixFrom(a, a.BitLen())), rejectV)...)
		}
		for _, p := range r.Allowed {
			rule(out, append(daddr(p), acceptV)...)
		}
		for _, p := range r.Blocked {
			rule(out, append(daddr(p), rejectV)...)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install the network rules: %w", err)
	}
	return nil
}

// ifname matches the interface of key (in or out) named name.
func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b}}
}

// established matches the packets of a connection already accepted.
func established() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED),
			Xor:  make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// tcpPort matches TCP to port.
func tcpPort(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	}
}

// daddr matches destinations in p, of p's family.
func daddr(p netip.Prefix) []expr.Any {
	p = p.Masked()
	proto, offset, n := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
	if !p.Addr().Is4() {
		proto, offset, n = unix.NFPROTO_IPV6, 24, 16
	}
	mask := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
	}
}
