#!/usr/bin/env bash
# engine.sh makes sure a Docker engine answers on this machine.
#
# Idempotent: when `docker info` answers, it does nothing. Otherwise, as root on
# Debian, it installs Debian's docker.io and the tools the offline image builds need
# (debootstrap), starts dockerd in the background with user-namespace remapping and
# its log in a file, and waits a bounded time for it to answer.
set -euo pipefail

log=${SANDBOXD_DOCKERD_LOG:-/var/log/sandboxd-dockerd.log}
wait_s=${SANDBOXD_DOCKERD_WAIT:-90}

say() { printf 'engine: %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	say "no Docker engine answers and this is not root: start dockerd yourself"
	exit 1
fi

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v busybox >/dev/null 2>&1 || [ -x /bin/busybox ] || need+=(busybox-static)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${need[@]}" iptables ca-certificates >/dev/null
fi

# Debian's docker.io ships its own client in /usr/bin; a newer client elsewhere on
# PATH still talks to it through API version negotiation.
mkdir -p /etc/docker
if [ ! -f /etc/docker/daemon.json ]; then
	cat >/etc/docker/daemon.json <<'JSON'
{
  "userns-remap": "default",
  "storage-driver": "overlay2",
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "2"}
}
JSON
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
	say "starting dockerd (log: $log)"
	pgrep -x containerd >/dev/null 2>&1 || true
	nohup setsid dockerd >>"$log" 2>&1 </dev/null &
fi

for _ in $(seq 1 "$wait_s"); do
	if docker info >/dev/null 2>&1; then
		say "engine ready"
		exit 0
	fi
	sleep 1
done
say "dockerd did not answer within ${wait_s}s; last lines of $log:"
tail -n 30 "$log" >&2 || true
exit 1
