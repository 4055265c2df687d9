// Command bothy-agent runs as PID 1 in every sandbox container. It reaps
// zombies, forwards termination to every process in the container, and serves
// bothy over the channel described in package agent.
//
// It reads BOTHY_SOCKET, the socket to dial, set by bothy when it creates
// the container, and its proof of identity from the token file beside it.
// When bothy has written a port beside the token, the agent listens on it
// instead and bothy dials in, both proving who they are with mutual TLS
// (the certificates beside the token).
// In a runner container for dynamic code, BOTHY_RUNTIME (python, node or
// bash) names the runtime host it starts before dialling.
//
// Run as "bothy-agent init-pod", it prepares a pod on Kubernetes from an
// init container: it copies itself where the sandbox's container runs it
// from, and installs the sandbox's network rules (package agent/guard).
// Where the sandbox's image carries the agent, the pod has no init
// container: the agent finds the same arguments in BOTHY_GUARD, installs
// the rules as PID 1. Either way, in a pod it makes the files the node
// binds in read-only (BOTHY_READONLY), drops the capabilities that allowed
// it all, seals what the container's seccomp profile allowed for them and
// makes itself undumpable, before it starts anything.
//
// Run as "bothy-agent kep", it is an agent-sandbox runtime on its own
// (KEP-539.2); "bothy-agent kep-ready" is that pod's startup probe.
//
// Run as "bothy-agent fs-helper", it is the one-shot helper the agent starts
// with a non-root user's credentials to run one file operation as that user.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bothy/bothy/agent/guard"
	"github.com/bothy/bothy/agent/kep"
	"github.com/bothy/bothy/agent/server"
	"github.com/bothy/bothy/agent/wire"
)

// termGrace is how long processes get between SIGTERM and SIGKILL when the
// container stops.
const termGrace = 1500 * time.Millisecond

// reservedThreads is how many OS threads the agent makes at its start, to
// go on working when the sandbox's processes have taken every pid.
const reservedThreads = 8

func main() {
	if len(os.Args) > 1 && os.Args[1] == "fs-helper" {
		os.Exit(server.RunFSHelper())
	}
	if len(os.Args) > 1 && os.Args[1] == "kep" {
		os.Exit(runKEP(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "kep-ready" {
		os.Exit(kepReady(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "init-pod" {
		os.Exit(initPod(os.Args[2:]))
	}
	// On a cluster the agent contains its own pod before anything else
	// runs in it.
	if g, ro := os.Getenv(wire.GuardEnv), os.Getenv(wire.ReadOnlyEnv); g != "" || ro != "" {
		if err := containSelf(g, ro); err != nil {
			fmt.Fprintln(os.Stderr, "bothy-agent: contain the pod:", err)
			os.Exit(1)
		}
	} else if os.Getpid() == 1 && guard.HoldsAdmin() {
		// A container that gives its agent what changes the network or
		// the mounts, and nothing to do with it: nothing starts in it.
		fmt.Fprintln(os.Stderr, "bothy-agent: CAP_NET_ADMIN or CAP_SYS_ADMIN without "+wire.GuardEnv+" or "+wire.ReadOnlyEnv+": refusing to start the sandbox")
		os.Exit(1)
	}
	// File transfers churn large buffers over a small live heap: collecting
	// less often costs little memory and a lot less CPU.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	server.LimitHeap()
	// One processor: the agent's work is handing bytes between sockets and
	// pipes, and with more than one every hand-off may wake another thread
	// (a 100 MiB download through a port: 420 MB/s at 1, 310 at 2).
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	// Threads for when the sandbox's processes have taken every pid.
	server.ReserveThreads(reservedThreads)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("component", "bothy-agent")
	socket := os.Getenv("BOTHY_SOCKET")
	if socket == "" {
		log.Error("BOTHY_SOCKET must be set")
		os.Exit(2)
	}
	token, err := server.ReadToken(socket)
	if err != nil {
		log.Error("read the agent token", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()

	srv := server.NewServer(log)
	// A runner container loads its runtime before it dials in, so a runner
	// that is connected is a warm one.
	if rt := os.Getenv("BOTHY_RUNTIME"); rt != "" {
		if err := srv.StartRuntime(rt); err != nil {
			log.Error("start runtime", "runtime", rt, "err", err)
			os.Exit(2)
		}
	}
	if cfg, ok, err := server.KEPConfig(socket); err != nil {
		log.Error("read the standard interface's configuration", "err", err)
	} else if ok {
		serveKEP(ctx, kep.Config{Root: cfg.Root, Metadata: cfg.Metadata}, srv, log)
	}
	if server.Networked(socket) {
		// bothy dials this agent over TCP with mutual TLS.
		if err := server.ListenTLS(ctx, "", socket, token, srv, log); err != nil {
			log.Error("listen for bothy", "err", err)
			os.Exit(2)
		}
	} else {
		server.Dial(ctx, socket, token, srv, log)
	}

	if os.Getpid() == 1 {
		// Forward the stop to every other process, then make sure none is left.
		_ = syscall.Kill(-1, syscall.SIGTERM)
		deadline := time.Now().Add(termGrace)
		for time.Now().Before(deadline) && syscall.Kill(-1, 0) == nil {
			time.Sleep(20 * time.Millisecond)
		}
		_ = syscall.Kill(-1, syscall.SIGKILL)
	}
	srv.Close()
}

// serveKEP serves the standard runtime interface beside bothy's channel,
// until ctx is done; a failure is logged and leaves the channel serving.
func serveKEP(ctx context.Context, cfg kep.Config, srv *server.Server, log *slog.Logger) {
	rt, err := kep.New(cfg, srv, log)
	if err != nil {
		log.Error("standard runtime interface", "err", err)
		return
	}
	go func() {
		if err := rt.Serve(ctx); err != nil {
			log.Error("standard runtime interface", "err", err)
		}
	}()
}

// runKEP is "bothy-agent kep": the agent as an agent-sandbox runtime
// (KEP-539.2) on its own, without bothy, until SIGTERM: files and working
// directories confined to --root, /v1/metadata telling the environment's
// variables that start with --metadata-prefix (none that look like
// credentials).
func runKEP(args []string) int {
	fs := flag.NewFlagSet("bothy-agent kep", flag.ContinueOnError)
	root := fs.String("root", kep.DefaultRoot, "the sandbox root")
	rest := fs.String("rest", kep.RESTAddr, "the REST service's address (files, health, metadata)")
	grpcAddr := fs.String("grpc", kep.GRPCAddr, "the process service's address (gRPC)")
	prefix := fs.String("metadata-prefix", "SANDBOX_", "variables of this prefix are /v1/metadata's")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("component", "bothy-agent")
	meta := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, *prefix) {
			meta[k] = v
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := server.NewServer(log)
	defer srv.Close()
	rt, err := kep.New(kep.Config{Root: *root, Metadata: meta, REST: *rest, GRPC: *grpcAddr}, srv, log)
	if err != nil {
		log.Error("standard runtime interface", "err", err)
		return 2
	}
	if err := rt.Serve(ctx); err != nil {
		log.Error("standard runtime interface", "err", err)
		return 1
	}
	return 0
}

// kepReady is "bothy-agent kep-ready", the startup probe of a pod that
// runs "bothy-agent kep": it succeeds once both of its services accept
// connections (they listen before either serves, so a connection accepted
// is answered), and a client that waits for the pod to be ready finds them.
func kepReady(args []string) int {
	fs := flag.NewFlagSet("bothy-agent kep-ready", flag.ContinueOnError)
	rest := fs.String("rest", kep.RESTAddr, "the REST service's address")
	grpcAddr := fs.String("grpc", kep.GRPCAddr, "the process service's address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, addr := range []string{*rest, *grpcAddr} {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bothy-agent kep-ready:", err)
			return 1
		}
		c.Close()
	}
	return 0
}

// initPod is "bothy-agent init-pod": see the package comment.
func initPod(args []string) int {
	r, dst, err := guardRules(args)
	if err == nil && dst != "" {
		err = install(dst)
	}
	if err == nil {
		err = guard.Install(r)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bothy-agent init-pod:", err)
		return 1
	}
	return 0
}

// containSelf, in a pod, before anything else runs in the container:
// installs the network rules of args (wire.GuardEnv) where no init
// container did, makes the files of readOnly (wire.ReadOnlyEnv) read-only,
// drops from every thread the capabilities that allowed it, and seals
// what the container's seccomp profile allowed for them (guard.Seal).
func containSelf(args, readOnly string) error {
	// Not passed on to what the agent starts. (They stay in
	// /proc/1/environ, which root in the sandbox may read: the rules, the
	// node's addresses and file names, none of them a secret.)
	for _, e := range []string{wire.GuardEnv, wire.HostIPsEnv, wire.ReadOnlyEnv} {
		os.Unsetenv(e)
	}
	if args != "" {
		r, dst, err := guardRules(strings.Fields(args))
		if err != nil {
			return err
		}
		if dst != "" {
			return fmt.Errorf("%s: --install is the init container's", wire.GuardEnv)
		}
		if err := guard.Install(r); err != nil {
			return err
		}
	}
	if err := guard.ReadOnly(strings.Fields(readOnly)); err != nil {
		return err
	}
	if err := guard.DropCaps(); err != nil {
		return err
	}
	if err := guard.Seal(); err != nil {
		return err
	}
	// Root in the sandbox holds the agent's uid and, now, the same
	// capabilities: undumpable, the agent keeps its /proc/1/fd (its
	// output is the container's log, on the node's disk), its memory and
	// its environment to itself (reading them takes CAP_SYS_PTRACE).
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("make the agent undumpable: %w", err)
	}
	if d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || d != 0 {
		return fmt.Errorf("the agent is still dumpable (%d, %v)", d, err)
	}
	return nil
}

// guardRules parses the arguments of "bothy-agent init-pod": the rules
// to install, and where to copy the agent ("" for nowhere).
func guardRules(args []string) (guard.Rules, string, error) {
	fs := flag.NewFlagSet("init-pod", flag.ContinueOnError)
	dst := fs.String("install", "", "copy this binary to this path")
	none := fs.Bool("none", false, "no network: nothing out but replies")
	block := fs.String("block", "", "comma-separated ranges (CIDR) not reached")
	allow := fs.String("allow", "", "comma-separated ranges (CIDR) reached although blocked")
	host := fs.String("host", "", "comma-separated addresses of the node, never reached, whatever -allow says")
	dnsFrom := fs.String("dns-from", "/etc/resolv.conf", "the resolv.conf whose nameservers are reached on port 53")
	port := fs.Uint("agent-port", 49980, "the agent's port, the one reached from outside")
	if err := fs.Parse(args); err != nil {
		return guard.Rules{}, "", err
	}
	if fs.NArg() > 0 {
		return guard.Rules{}, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	fail := func(err error) (guard.Rules, string, error) { return guard.Rules{}, "", err }
	r := guard.Rules{None: *none, AgentPort: uint16(*port)}
	for _, list := range []struct {
		s   string
		out *[]netip.Prefix
	}{{*block, &r.Blocked}, {*allow, &r.Allowed}} {
		for c := range strings.SplitSeq(list.s, ",") {
			if c == "" {
				continue
			}
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return fail(err)
			}
			*list.out = append(*list.out, p)
		}
	}
	for a := range strings.SplitSeq(*host, ",") {
		if a == "" {
			continue
		}
		// An address the kubelet did not fill in fails the pod: a rule
		// quietly missing would open the node.
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return fail(fmt.Errorf("--host: %w", err))
		}
		r.Host = append(r.Host, ip)
	}
	// The pod's gateways are the node's too, whatever its reported
	// addresses.
	gws, err := gateways("/proc/net/route")
	if err != nil {
		return fail(err)
	}
	r.Host = append(r.Host, gws...)
	if !*none {
		if b, err := os.ReadFile(*dnsFrom); err == nil {
			for line := range strings.SplitSeq(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "nameserver" {
					if ip, err := netip.ParseAddr(f[1]); err == nil {
						r.DNS = append(r.DNS, ip)
					}
				}
			}
		}
	}
	return r, *dst, nil
}

// gateways are the IPv4 gateways of the routes in file (/proc/net/route:
// a header line, then fields of which the third is the gateway, in hex, in
// the host's byte order).
func gateways(file string) ([]netip.Addr, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	lines := strings.Split(string(b), "\n")
	for _, line := range lines[min(1, len(lines)):] {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		v, err := strconv.ParseUint(f[2], 16, 32)
		if err != nil || v == 0 {
			continue
		}
		var a [4]byte
		binary.NativeEndian.PutUint32(a[:], uint32(v))
		out = append(out, netip.AddrFrom4(a))
	}
	return out, nil
}

// install copies this binary to dst, executable by all.
func install(dst string) error {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer src.Close()
	out, err := os.OpenFile(dst+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}
