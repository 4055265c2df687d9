#!/usr/bin/env bash
# A single-node Kubernetes cluster on this machine's loopback, for bothy's
# Kubernetes tier (issue 25):
#   - etcd: Debian's etcd-server;
#   - kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
#     kubectl: built from k8s.io/kubernetes at one release through
#     scripts/kube/go.mod;
#   - agent-sandbox's controller and CRDs: sigs.k8s.io/agent-sandbox;
#   - a containerd of the cluster's own (not the engine's) with the CRI
#     plugin, and Debian's CNI plugins on a bridge of its own;
#   - Debian's docker-registry on loopback port 15000, where bothy pushes
#     its sandboxes' images and the node pulls them.
# Built binaries are kept in $BOTHY_KUBE_CACHE by version.
#
#   scripts/kube.sh up     build what is missing, start the cluster, wait for its node
#   scripts/kube.sh down   stop every process it started and remove all it made
#   scripts/kube.sh env    print the lines that point a shell (and bothy's tests) at it
#
# Everything it makes is under $BOTHY_KUBE_STATE and $BOTHY_KUBE_RUN, the
# bridge bkube0 and the network namespaces and mounts its pods got; down
# removes exactly those. The Docker engine, its bridges, rules and
# containerd are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION=v1.36.3
AGENT_SANDBOX_VERSION=v1.0.1
CACHE=${BOTHY_KUBE_CACHE:-/var/cache/bothy-kube}
STATE=${BOTHY_KUBE_STATE:-/var/lib/bothy-kube}
RUN=${BOTHY_KUBE_RUN:-/run/bothy-kube}
BIN=$CACHE/$KUBE_VERSION
ASBIN=$CACHE/agent-sandbox-$AGENT_SANDBOX_VERSION
NODE=$(hostname)
BRIDGE=bkube0
POD_CIDR=10.250.0.0/24
SERVICE_CIDR=10.251.0.0/24
ETCD_PORT=23790
APISERVER_PORT=16443
KUBELET_PORT=10350
REGISTRY_PORT=15000
PAUSE_IMAGE=bothy.local/pause:1

say() { echo "kube: $*" >&2; }
die() { say "$*"; exit 1; }

# wait_for CMD...: run CMD every 0.2 s until it succeeds, for at most 60 s.
wait_for() {
	local i
	for i in $(seq 300); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	return 1
}

kubectl() { "$BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }

packages() {
	local missing=()
	command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
	[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
	command -v containerd >/dev/null 2>&1 || missing+=(containerd)
	command -v openssl >/dev/null 2>&1 || missing+=(openssl)
	command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
	if [ ${#missing[@]} -gt 0 ]; then
		say "installing ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
			die "apt-get install ${missing[*]} failed"
	fi
}

binaries() {
	local b missing=0
	for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
		[ -x "$BIN/$b" ] || missing=1
	done
	if [ $missing = 1 ]; then
		say "building Kubernetes $KUBE_VERSION into $BIN (a few minutes the first time)"
		mkdir -p "$BIN.tmp"
		(cd scripts/kube && for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
			CGO_ENABLED=0 go build -trimpath -o "$BIN.tmp/$b" \
				-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36" \
				"k8s.io/kubernetes/cmd/$b"
		done)
		rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
	fi
	if [ ! -x "$ASBIN/agent-sandbox-controller" ] || [ ! -d "$ASBIN/crds" ]; then
		say "building agent-sandbox $AGENT_SANDBOX_VERSION into $ASBIN"
		mkdir -p "$ASBIN.tmp"
		GOBIN="$ASBIN.tmp" CGO_ENABLED=0 go install -trimpath "sigs.k8s.io/agent-sandbox/cmd/agent-sandbox-controller@$AGENT_SANDBOX_VERSION"
		local dir
		dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/agent-sandbox@$AGENT_SANDBOX_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		[ -d "$dir/k8s/crds" ] || die "no CRDs in $dir/k8s/crds"
		cp -r "$dir/k8s/crds" "$ASBIN.tmp/crds" && chmod -R u+w "$ASBIN.tmp/crds"
		rm -rf "$ASBIN" && mv "$ASBIN.tmp" "$ASBIN"
	fi
}

# pki makes a CA and the certificates of the apiserver, the admin, the
# kubelet and the apiserver's client of the kubelet, and a service-account
# key, once.
pki() {
	local d=$STATE/pki
	[ -f "$d/done" ] && return 0
	mkdir -p "$d"
	(
		cd "$d"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=bothy-kube-ca" 2>/dev/null
		cert() { # name subject [san]
			openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
			if [ -n "${3:-}" ]; then
				printf 'subjectAltName=%s\n' "$3" >"$1.ext"
				openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 -extfile "$1.ext" 2>/dev/null
			else
				openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 2>/dev/null
			fi
		}
		cert apiserver "/CN=kube-apiserver" "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:${SERVICE_CIDR%.0/24}.1"
		cert admin "/O=system:masters/CN=admin"
		cert kubelet "/O=system:nodes/CN=system:node:$NODE"
		cert apiserver-kubelet "/O=system:masters/CN=kube-apiserver-kubelet-client"
		openssl genrsa -out sa.key 2048 2>/dev/null
		openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
		touch done
	)
	for who in admin kubelet; do
		cat >"$STATE/$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: bothy-kube
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $d/ca.crt
users:
- name: $who
  user:
    client-certificate: $d/$who.crt
    client-key: $d/$who.key
contexts:
- name: bothy-kube
  context: {cluster: bothy-kube, user: $who}
current-context: bothy-kube
EOF
	done
}

# start NAME CMD...: run CMD in the background, its output in NAME's log,
# its pid in NAME's pid file.
start() {
	local name=$1
	shift
	"$@" >"$STATE/logs/$name.log" 2>&1 &
	echo $! >"$RUN/$name.pid"
}

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# pause_image writes a pause image (a static program that waits for a
# signal) as a Docker archive that containerd imports: no registry is
# reachable here.
pause_image() {
	local d=$STATE/pause
	[ -f "$d/pause.tar" ] && return 0
	mkdir -p "$d/root"
	(cd scripts/kube && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$d/root/pause" ./pause &&
		go run ./archive "$PAUSE_IMAGE" /pause "$d/root" "$d/pause.tar")
}

up() {
	[ "$(id -u)" = 0 ] || die "run as root: the kubelet tier mounts, makes network namespaces and a bridge"
	packages
	binaries
	mkdir -p "$STATE/logs" "$STATE/etcd" "$STATE/kubelet" "$STATE/containerd" "$STATE/cni/net.d" "$STATE/cni/ipam" "$STATE/pod-logs" "$RUN"
	pki
	pause_image
	local pki=$STATE/pki

	if ! alive etcd; then
		start etcd etcd --name bothy-kube --data-dir "$STATE/etcd" \
			--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
			--listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
			--initial-cluster "bothy-kube=http://127.0.0.1:$((ETCD_PORT + 10))"
	fi
	if ! alive apiserver; then
		start apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
			--bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" --advertise-address "$(hostname -I | awk '{print $1}')" \
			--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" --client-ca-file "$pki/ca.crt" \
			--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
			--service-account-issuer https://kubernetes.default.svc --service-cluster-ip-range "$SERVICE_CIDR" \
			--authorization-mode Node,RBAC --kubelet-client-certificate "$pki/apiserver-kubelet.crt" \
			--kubelet-client-key "$pki/apiserver-kubelet.key" --kubelet-preferred-address-types Hostname \
			--allow-privileged=true --profiling=false
	fi
	wait_for kubectl get --raw /readyz || die "the apiserver is not ready: $STATE/logs/apiserver.log"
	if ! alive controller-manager; then
		start controller-manager "$BIN/kube-controller-manager" --kubeconfig "$STATE/admin.kubeconfig" \
			--bind-address 127.0.0.1 --secure-port 10357 --leader-elect=false \
			--service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
			--cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
			--use-service-account-credentials=true --profiling=false
	fi
	if ! alive scheduler; then
		start scheduler "$BIN/kube-scheduler" --kubeconfig "$STATE/admin.kubeconfig" \
			--bind-address 127.0.0.1 --secure-port 10359 --leader-elect=false --profiling=false
	fi

	# The cluster's registry: bothy pushes the images of its sandboxes
	# there and the node pulls them, over plain HTTP on loopback.
	mkdir -p "$STATE/registry" "$STATE/certs.d/127.0.0.1:$REGISTRY_PORT"
	cat >"$STATE/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $STATE/registry/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
	if ! alive registry; then
		start registry docker-registry serve "$STATE/registry/config.yml"
	fi
	wait_for curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/" || die "the registry did not start: $STATE/logs/registry.log"
	cat >"$STATE/certs.d/127.0.0.1:$REGISTRY_PORT/hosts.toml" <<EOF
server = "http://127.0.0.1:$REGISTRY_PORT"
[host."http://127.0.0.1:$REGISTRY_PORT"]
  capabilities = ["pull", "resolve"]
EOF

	cat >"$STATE/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"
[grpc]
  address = "$RUN/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$STATE/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
EOF
	cat >"$STATE/cni/net.d/10-bothy-kube.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "bothy-kube", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$STATE/cni/ipam"}}
]}
EOF
	# The pod network forwards, as a cluster's does (the engine's FORWARD
	# policy drops): pods reach each other, the node and beyond, and only
	# each pod's own rules (bothy's guard) contain a sandbox.
	for dir in -i -o; do
		iptables -C FORWARD "$dir" "$BRIDGE" -m comment --comment bothy-kube -j ACCEPT 2>/dev/null ||
			iptables -I FORWARD 1 "$dir" "$BRIDGE" -m comment --comment bothy-kube -j ACCEPT
	done
	if ! alive containerd; then
		start containerd containerd --config "$STATE/containerd.toml"
		wait_for ctr --address "$RUN/containerd.sock" version || die "containerd did not start: $STATE/logs/containerd.log"
	fi
	ctr --address "$RUN/containerd.sock" -n k8s.io images import --no-unpack=false "$STATE/pause/pause.tar" >/dev/null

	cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
healthzBindAddress: 127.0.0.1
healthzPort: $((KUBELET_PORT - 2))
readOnlyPort: 0
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://$RUN/containerd.sock
podLogsDir: $STATE/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
serializeImagePulls: false
EOF
	if ! alive kubelet; then
		start kubelet "$BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
			--root-dir "$STATE/kubelet" --hostname-override "$NODE"
	fi
	wait_for sh -c "'$BIN/kubectl' --kubeconfig '$STATE/admin.kubeconfig' get node '$NODE' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True" ||
		die "the node is not ready: $STATE/logs/kubelet.log"

	kubectl apply --server-side -f "$ASBIN/crds" >/dev/null
	wait_for kubectl wait --for condition=Established --timeout 1s crd --all || die "agent-sandbox's CRDs were not established"
	if ! alive agent-sandbox; then
		start agent-sandbox "$ASBIN/agent-sandbox-controller" --kubeconfig "$STATE/admin.kubeconfig" --extensions \
			--leader-elect=false --metrics-bind-address 0 --health-probe-bind-address 127.0.0.1:18081
	fi
	wait_for curl -sf http://127.0.0.1:18081/readyz || die "agent-sandbox's controller is not ready: $STATE/logs/agent-sandbox.log"
	say "up: KUBECONFIG=$STATE/admin.kubeconfig (node $NODE, Kubernetes $KUBE_VERSION, agent-sandbox $AGENT_SANDBOX_VERSION)"
}

down() {
	local name pid
	# The pods first, while the kubelet runs, so that their networks are
	# torn down the ordinary way (bounded); then the kubelet, so that it
	# starts nothing more; then what its pods left in containerd; then
	# the rest.
	# The agent-sandbox controller first: it would make the pods again.
	if alive agent-sandbox; then
		pid=$(cat "$RUN/agent-sandbox.pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		rm -f "$RUN/agent-sandbox.pid"
	fi
	if alive kubelet && alive apiserver; then
		kubectl delete pods --all --all-namespaces --grace-period 0 --force --wait=false >/dev/null 2>&1 || true
		wait_for sh -c "[ -z \"\$('$BIN/kubectl' --kubeconfig '$STATE/admin.kubeconfig' get pods -A -o name 2>/dev/null)\" ]" || say "pods still there; ending them by force"
	fi
	for name in agent-sandbox kubelet; do
		if alive "$name"; then kill "$(cat "$RUN/$name.pid")" 2>/dev/null || true; fi
	done
	for name in agent-sandbox kubelet; do
		[ -f "$RUN/$name.pid" ] || continue
		pid=$(cat "$RUN/$name.pid")
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		rm -f "$RUN/$name.pid"
	done
	if alive containerd; then
		local c=(ctr --address "$RUN/containerd.sock" -n k8s.io)
		for task in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true; done
		for _ in $(seq 50); do [ -z "$("${c[@]}" tasks ls -q 2>/dev/null)" ] && break; sleep 0.1; done
		for task in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks delete -f "$task" >/dev/null 2>&1 || true; done
		for ctr_id in $("${c[@]}" containers ls -q 2>/dev/null); do "${c[@]}" containers delete "$ctr_id" >/dev/null 2>&1 || true; done
	fi
	for name in containerd registry scheduler controller-manager apiserver etcd; do
		[ -f "$RUN/$name.pid" ] || continue
		pid=$(cat "$RUN/$name.pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		rm -f "$RUN/$name.pid"
	done
	# containerd's shims of the cluster's pods (theirs, by the socket
	# they were started for), then mounts, namespaces and the bridge.
	for pid in $(pgrep -f "containerd-shim.*-address $RUN/containerd.sock" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
	awk -v s="$STATE" -v r="$RUN" '$2 ~ "^"s"/" || $2 ~ "^"r"/" {print $2}' /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	# Network namespaces containerd made for the cluster's pods and left
	# behind (cni-*, with no process in them any more).
	for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do
		[ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && ip netns delete "$ns" 2>/dev/null || true
	done
	ip link delete "$BRIDGE" 2>/dev/null || true
	for dir in -i -o; do
		while iptables -D FORWARD "$dir" "$BRIDGE" -m comment --comment bothy-kube -j ACCEPT 2>/dev/null; do :; done
	done
	rm -rf "$RUN" "$STATE"
	say "down"
}

case "${1:-}" in
up) up ;;
down) down ;;
env)
	echo "export KUBECONFIG=$STATE/admin.kubeconfig"
	echo "export BOTHY_KUBECONFIG=$STATE/admin.kubeconfig BOTHY_KUBE_REGISTRY=127.0.0.1:$REGISTRY_PORT BOTHY_KUBECTL=$BIN/kubectl"
	;;
*) die "usage: $0 up|down|env" ;;
esac
