#!/usr/bin/env bash
# A private Docker daemon (Debian's docker.io) for images and the test cluster's kubelet.
#
#   scripts/dockerd.sh install      apt-get install docker.io and the CNI plugins (idempotent)
#   scripts/dockerd.sh start DIR    start dockerd; socket DIR/docker.sock, log DIR/dockerd.log
#   scripts/dockerd.sh stop DIR     stop what `start DIR` started
#
# Images live in ${MINERPOOL_DOCKER_ROOT:-~/.cache/minerpool/docker}, so `make images` and the
# test cluster see the same images and a second start is warm. The daemon makes no bridge, no
# NAT and no iptables rules of its own: containers get a network only from the cluster's CNI.
set -euo pipefail

CACHE=${MINERPOOL_CACHE:-$HOME/.cache/minerpool}
DATA_ROOT=${MINERPOOL_DOCKER_ROOT:-$CACHE/docker}
READY_TIMEOUT=${MINERPOOL_DOCKER_READY_TIMEOUT:-60}
DOCKER=/usr/bin/docker

log() { printf 'dockerd: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

cmd_install() {
    local want=() pkg
    for pkg in docker.io containernetworking-plugins iptables conntrack gettext-base; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            want+=("$pkg")
    done
    [ ${#want[@]} -eq 0 ] && return 0
    apt-cache show docker.io >/dev/null 2>&1 || as_root apt-get update >&2
    log "apt-get install ${want[*]}"
    # Debian starts the service it installs; the project runs its own daemon instead.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${want[@]}" >&2 || die "apt-get install ${want[*]} failed"
}

cmd_start() {
    local dir=${1:?usage: start DIR}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -x /usr/sbin/dockerd ] || die "dockerd missing: run '$0 install' first"
    if [ -f "$dir/docker.pid" ] && kill -0 "$(cat "$dir/docker.pid")" 2>/dev/null; then
        die "a daemon from $dir is running: run '$0 stop $dir' first"
    fi
    mkdir -p "$DATA_ROOT" "$dir/exec"
    # A daemon that died leaves its pid file, which keeps the next one from starting.
    rm -f "$DATA_ROOT/docker.pid"
    /usr/sbin/dockerd --data-root "$DATA_ROOT" --exec-root "$dir/exec" \
        -H "unix://$dir/docker.sock" --pidfile "$dir/docker.pid" \
        --containerd-namespace minerpool --containerd-plugins-namespace minerpool-plugins \
        --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
        --storage-driver overlay2 --exec-opt native.cgroupdriver=cgroupfs \
        --log-level warn >"$dir/dockerd.log" 2>&1 &
    echo $! >"$dir/dockerd.spawned"
    local deadline=$((SECONDS + READY_TIMEOUT))
    until "$DOCKER" -H "unix://$dir/docker.sock" version >/dev/null 2>&1; do
        if ! kill -0 "$(cat "$dir/dockerd.spawned")" 2>/dev/null; then
            tail -n 20 "$dir/dockerd.log" >&2
            die "dockerd exited (see $dir/dockerd.log)"
        fi
        [ $SECONDS -lt $deadline ] || die "dockerd not ready after ${READY_TIMEOUT}s"
        sleep 0.3
    done
    echo "unix://$dir/docker.sock"
}

cmd_stop() {
    local dir=${1:?usage: stop DIR} pid
    [ -f "$dir/dockerd.spawned" ] || return 0
    pid=$(cat "$dir/dockerd.spawned")
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/dockerd.spawned"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:-}" ;;
*) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
