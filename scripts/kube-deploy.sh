#!/usr/bin/env bash
# bothyd inside the cluster of scripts/kube.sh (issue 25): deploy/kubernetes
# with this cluster's overlay, which this script writes.
#
#   scripts/kube-deploy.sh up     push the image, apply, wait until ready
#   scripts/kube-deploy.sh down   delete all it made, the sandboxes and the data
#
# What stays: bothy's image in the cluster's registry and the node's
# containerd, which `make kube-down` removes with the cluster.
#
# Settings (environment):
#   BOTHY_DEPLOY_IMAGE      the local image of bothy (bothy/bothy:latest,
#                           which `make image` builds)
#   BOTHY_DEPLOY_NAMESPACE  where bothyd and its sandboxes live (bothy)
#   BOTHY_DEPLOY_DATA       its data directory, the same path on the node
#                           and in its pod (/var/lib/bothy-kube-deploy/NS)
#   BOTHY_DEPLOY_LISTEN     where it listens, on the node's loopback
#                           (127.0.0.1:7079)
#   BOTHY_DEPLOY_KEY        its admin key (made once and kept in the data
#                           directory if not given)
#   BOTHY_DEPLOY_SETTINGS   more of bothyd's settings, as space-separated
#                           NAME=VALUE (BOTHY_SANDBOX_POOL=0, say)
#
# This cluster's overlay: bothyd shares the node's network (the registry and
# the API server listen on its loopback only, and no kube-proxy runs); its
# data volume is a hostPath PersistentVolume at the same path it has in the
# pod, because runner containers on the node's Docker engine bind-mount paths
# under it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

eval "$(bash scripts/kube.sh env)"
kubectl=$BOTHY_KUBECTL
registry=$BOTHY_KUBE_REGISTRY
ns=${BOTHY_DEPLOY_NAMESPACE:-bothy}
data=${BOTHY_DEPLOY_DATA:-/var/lib/bothy-kube-deploy/$ns}
listen=${BOTHY_DEPLOY_LISTEN:-127.0.0.1:7079}
image=${BOTHY_DEPLOY_IMAGE:-bothy/bothy:latest}
work=${BOTHY_KUBE_STATE:-/var/lib/bothy-kube}/deploy/$ns
# What up writes in the data directory: up takes, and down deletes, no
# directory without it that holds anything but bothy's instance name.
marker=.bothy-kube-deploy

log() { echo "kube-deploy: $*" >&2; }

if ! [[ $ns =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]]; then
	log "BOTHY_DEPLOY_NAMESPACE=$ns is not a namespace's name"
	exit 2
fi
if ! [[ $data =~ ^/[A-Za-z0-9._/-]+$ ]]; then
	log "BOTHY_DEPLOY_DATA=$data is not an absolute path of letters, digits, '.', '_', '-' and '/'"
	exit 2
fi

# ours says whether the data directory is this script's to use and delete:
# absent, marked by an up, or holding nothing but an instance name.
ours() {
	[ ! -d "$data" ] || [ -e "$data/$marker" ] || [ -z "$(ls -A "$data" | grep -vx instance)" ]
}

up() {
	"$kubectl" version >/dev/null 2>&1 || { log "no cluster answers: make kube-up first"; exit 1; }
	local apiserver
	apiserver=$(sed -n 's|^ *server: https://\(.*\)$|\1|p' "$KUBECONFIG" | head -1)
	if ! ours; then
		log "$data holds what this script did not make; choose another BOTHY_DEPLOY_DATA"
		exit 1
	fi
	docker image inspect "$image" >/dev/null 2>&1 || { log "no image $image: make image first"; exit 1; }
	# The tag is the image's ID, so that a new build rolls the pod.
	local id remote
	id=$(docker image inspect -f '{{.Id}}' "$image" | sed 's/^sha256://' | cut -c1-16)
	remote=$registry/bothy/bothy:$id
	docker tag "$image" "$remote"
	docker push -q "$remote" >/dev/null
	docker rmi "$remote" >/dev/null

	# Runner containers, whose root is remapped, traverse the data
	# directory and its parents.
	mkdir -p -m 0755 "$(dirname "$data")"
	mkdir -p "$data" "$work"
	chmod 0711 "$data"
	touch "$data/$marker"
	# The admin key is in the data directory and the overlay: theirs alone.
	umask 077
	local key=${BOTHY_DEPLOY_KEY:-}
	if [ -z "$key" ]; then
		[ -s "$data/.deploy-admin-key" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$data/.deploy-admin-key"
		key=$(cat "$data/.deploy-admin-key")
	fi
	local port=${listen##*:} settings="" setting
	set -f
	for setting in ${BOTHY_DEPLOY_SETTINGS:-}; do
		[[ $setting =~ ^[A-Z_][A-Z0-9_]*=[^\"\\]*$ ]] || { log "BOTHY_DEPLOY_SETTINGS: $setting is not NAME=VALUE"; exit 2; }
		settings+=$(printf '\n      - {op: add, path: /data/%s, value: "%s"}' "${setting%%=*}" "${setting#*=}")
	done
	set +f
	cat >"$work/pv.yaml" <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: bothy-data-$ns
spec:
  capacity:
    storage: 20Gi
  accessModes: ["ReadWriteOnce"]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: bothy-local-$ns
  hostPath:
    path: $data
    type: Directory
EOF
	cat >"$work/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $ns
resources:
  - $(realpath --relative-to="$work" "$repo/deploy/kubernetes")
  - pv.yaml
images:
  - name: bothy/bothy
    newName: $registry/bothy/bothy
    newTag: "$id"
secretGenerator:
  - name: bothyd-admin
    literals: ["BOTHY_ADMIN_KEY=$key"]
generatorOptions:
  disableNameSuffixHash: true
patches:
  - target: {kind: ConfigMap, name: bothyd}
    patch: |-
      - {op: replace, path: /data/BOTHY_REGISTRY, value: "$registry"}
      - {op: replace, path: /data/BOTHY_LISTEN, value: "$listen"}
      - {op: add, path: /data/KUBERNETES_SERVICE_HOST, value: "${apiserver%:*}"}
      - {op: add, path: /data/KUBERNETES_SERVICE_PORT, value: "${apiserver##*:}"}$settings
  - target: {kind: StatefulSet, name: bothyd}
    patch: |-
      - {op: add, path: /spec/template/spec/hostNetwork, value: true}
      - {op: add, path: /spec/template/spec/dnsPolicy, value: ClusterFirstWithHostNet}
      - {op: replace, path: /spec/template/spec/containers/0/args, value: ["--runtime", "kubernetes", "--data", "$data"]}
      - {op: replace, path: /spec/template/spec/containers/0/volumeMounts/0/mountPath, value: "$data"}
      - {op: replace, path: /spec/template/spec/containers/0/ports, value: [{name: http, containerPort: $port}]}
      - {op: add, path: /spec/template/spec/containers/0/readinessProbe/httpGet/host, value: "127.0.0.1"}
      - {op: add, path: /spec/template/spec/containers/0/livenessProbe/httpGet/host, value: "127.0.0.1"}
      - {op: add, path: /spec/volumeClaimTemplates/0/spec/storageClassName, value: bothy-local-$ns}
EOF
	"$kubectl" apply -k "$work" >&2
	if ! "$kubectl" -n "$ns" rollout status statefulset/bothyd --timeout=5m >&2; then
		"$kubectl" -n "$ns" describe pod bothyd-0 >&2 || true
		"$kubectl" -n "$ns" logs bothyd-0 --tail=50 >&2 || true
		exit 1
	fi
	log "bothyd runs in namespace $ns at http://$listen (admin key in $data/.deploy-admin-key unless BOTHY_DEPLOY_KEY was given)"
	echo "http://$listen"
}

down() {
	if [ -d "$work" ]; then
		# bothyd must be gone before its data is: with no cluster to ask,
		# stop here.
		"$kubectl" version >/dev/null 2>&1 || { log "no cluster answers: bothyd of $ns may still run; nothing removed"; exit 1; }
		# The namespace takes bothyd, its Sandboxes and their pods with it.
		"$kubectl" delete -k "$work" --ignore-not-found --wait --timeout=5m >&2
		"$kubectl" delete pv "bothy-data-$ns" --ignore-not-found --wait --timeout=1m >&2
	fi
	if ! ours; then
		log "$data holds what this script did not make: left as it is"
		rm -rf "$work"
		return
	fi
	# What bothyd made on the node's engine carries its instance label.
	if [ -s "$data/instance" ]; then
		local instance
		instance=$(cat "$data/instance")
		docker ps -aq --filter "label=bothy.instance=$instance" | xargs -r docker rm -f >/dev/null
		docker images -q --filter "label=bothy.instance=$instance" | sort -u | xargs -r docker rmi -f >/dev/null || true
	fi
	if mountpoint -q "$data/run"; then umount "$data/run"; fi
	rm -rf "$data" "$work"
	if [ -z "${BOTHY_DEPLOY_DATA:-}" ] && [ -d /var/lib/bothy-kube-deploy ]; then
		rmdir --ignore-fail-on-non-empty /var/lib/bothy-kube-deploy
	fi
}

case ${1:-} in
up) up ;;
down) down ;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac
