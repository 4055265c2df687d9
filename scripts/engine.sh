#!/usr/bin/env bash
# engine.sh makes sure a Docker engine answers on this machine.
#
# Idempotent: when `docker info` answers, it only raises the kernel's key quota
# (below); bothy then finds out for itself whether that engine can enforce
# per-sandbox disk limits. Otherwise,
# as root on Debian, it installs Debian's docker.io and the tools the offline image
# builds need, and starts dockerd in the background with:
#   - user-namespace remapping;
#   - the btrfs storage driver on a loop-mounted btrfs file with simple quotas
#     (squota, kernel 6.7 and later), so that `--storage-opt size=` (a sandbox's
#     disk_mb) holds against bytes and inodes alike (overlay2 on ext4 cannot, and
#     XFS project quotas are not in this kernel: see docs/security.md). Full
#     btrfs quota groups enforce too, but their accounting made every container
#     removal take seconds to minutes of kernel time under load; simple quotas
#     cost nothing visible;
#   - its own config file, data root and log, leaving /etc/docker alone.
# When the loop file cannot be made or mounted it falls back to overlay2 and says
# that disk limits will not be enforced. It waits a bounded time for the engine.
set -euo pipefail

log=${BOTHY_DOCKERD_LOG:-/var/log/bothy-dockerd.log}
wait_s=${BOTHY_DOCKERD_WAIT:-90}
root=${BOTHY_ENGINE_ROOT:-/var/lib/bothy-engine}
img=${BOTHY_ENGINE_IMG:-/var/lib/bothy-engine.btrfs}
conf=/etc/bothy/dockerd.json

say() { printf 'engine: %s\n' "$*" >&2; }

# With userns-remap every container's root is the same unprivileged host user,
# whose kernel key quota (kernel.keys.maxkeys, 200 by default) runc spends a
# session keyring per container and per exec: past about 200 sandboxes a
# `docker exec` fails. Give that user root's quota.
if [ "$(id -u)" = 0 ] && [ "$(cat /proc/sys/kernel/keys/maxkeys 2>/dev/null || echo 1000000)" -lt 1000000 ]; then
	sysctl -q -w kernel.keys.maxkeys=1000000 kernel.keys.maxbytes=25000000 || say "could not raise kernel.keys.maxkeys (many sandboxes will not all take docker exec)"
fi

# The registry the tests push to and pull from (Debian's, on a loopback port
# of the test's own); its packaged service is not wanted.
if [ "$(id -u)" = 0 ] && ! command -v docker-registry >/dev/null 2>&1; then
	say "installing docker-registry"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null; }
	if command -v systemctl >/dev/null 2>&1; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi
	pkill -x docker-registry 2>/dev/null || true
fi

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
command -v mkfs.btrfs >/dev/null 2>&1 || need+=(btrfs-progs)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${need[@]}" iptables ca-certificates >/dev/null
fi

# btrfs_root mounts (making it first if needed) a btrfs file system with quotas
# at $root. The file is sparse: its size is a ceiling, not an allocation.
btrfs_root() {
	if mountpoint -q "$root"; then
		[ "$(stat -f -c %T "$root")" = btrfs ]
		return
	fi
	if [ ! -f "$img" ]; then
		local free_k size_k
		free_k=$(df -Pk "$(dirname "$img")" | awk 'NR==2 {print $4}')
		size_k=$((free_k * 8 / 10))
		# Between 4 GiB and 200 GiB: the engine's images and every sandbox's layer.
		[ "$size_k" -gt $((200 * 1024 * 1024)) ] && size_k=$((200 * 1024 * 1024))
		[ "$size_k" -ge $((4 * 1024 * 1024)) ] || { say "less than 5 GiB free for a btrfs data root"; return 1; }
		truncate -s "${size_k}K" "$img.new"
		mkfs.btrfs -q "$img.new" >/dev/null
		mv "$img.new" "$img"
	fi
	mkdir -p "$root"
	mount -o loop "$img" "$root"
	if ! btrfs qgroup show "$root" >/dev/null 2>&1; then
		# BTRFS_IOC_QUOTA_CTL with BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA (Debian
		# 12's btrfs-progs predates `btrfs quota enable --simple`).
		if ! perl -e 'open(my $f, "<", $ARGV[0]) or die "$!\n"; my $a = pack("QQ", 4, 0); ioctl($f, 0xC0109428, $a) or die "$!\n"' "$root"; then
			say "simple quotas are not in this kernel: enabling full btrfs quotas (slow removals)"
			btrfs quota enable "$root"
		fi
	fi
}

mkdir -p "$(dirname "$conf")"
if btrfs_root 2>>"$log"; then
	driver=btrfs
else
	say "no btrfs data root ($img): falling back to overlay2; per-sandbox disk limits will be refused"
	driver=overlay2
	mkdir -p "$root"
fi
cat >"$conf.new" <<JSON
{
  "userns-remap": "default",
  "data-root": "$root",
  "storage-driver": "$driver",
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "2"}
}
JSON
mv "$conf.new" "$conf"

if ! pgrep -x dockerd >/dev/null 2>&1; then
	say "starting dockerd on $driver in $root (log: $log)"
	# Signals queued in containers count, in the end, against root's own
	# limit on the host (their user namespaces are root's): the engine,
	# and so every container it makes, gets half of it, and the other
	# half stays the host's (docs/security.md).
	limit=()
	if [ "$(ulimit -i)" != unlimited ]; then
		half=$(( $(ulimit -i) / 2 ))
		limit=(prlimit --sigpending="$half:$half")
	fi
	nohup setsid "${limit[@]}" dockerd --config-file "$conf" >>"$log" 2>&1 </dev/null &
fi

for _ in $(seq 1 "$wait_s"); do
	if docker info >/dev/null 2>&1; then
		say "engine ready ($(docker info --format '{{.Driver}}'))"
		exit 0
	fi
	sleep 1
done
say "dockerd did not answer within ${wait_s}s; last lines of $log:"
tail -n 30 "$log" >&2 || true
exit 1
