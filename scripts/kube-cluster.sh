#!/usr/bin/env bash
# A one-node Kubernetes cluster that runs pods, for tests and for trying minerpool by hand:
# the control plane of scripts/kube-test-env.sh plus kube-scheduler, a kubelet (dockershim, on
# the private Docker daemon of scripts/dockerd.sh) and kube-proxy.
#
#   scripts/kube-cluster.sh install      build/download everything into the cache (idempotent)
#   scripts/kube-cluster.sh start DIR    start it; DIR/env holds KUBECONFIG, DOCKER_HOST, NODE_IP
#   scripts/kube-cluster.sh stop DIR     stop everything `start DIR` started and undo its changes
#
# DIR/env also puts helm on PATH.
#
# Network: pods live on the bridge cni0, 10.88.0.0/24; the host is 10.88.0.1 (NODE_IP) on it.
# Pods reach servers on the host that listen on NODE_IP (or 0.0.0.0), and the API server through
# the `kubernetes` Service. Services get 10.96.0.0/16, routed to cni0 and served by kube-proxy
# (iptables mode). There is no cluster DNS: pods name host servers by address.
#
# Nothing leaves the machine. Before anything starts, the guard chains drop: every packet the
# pods send to anything but the bridge (FORWARD), the cloud metadata range 169.254.0.0/16
# (OUTPUT; the kubelet also runs with AWS_EC2_METADATA_DISABLED), and connections to the API
# server's port from anything but loopback and the bridge (INPUT). Pods get a resolver of
# 127.0.0.1, i.e. none. `stop` removes the chains, the bridge and the routes, and restores the
# sysctls kube-proxy and the CNI plugin change.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
CACHE=${MINERPOOL_KUBE_CACHE:-$HOME/.cache/minerpool/kube-1.20.2}
BIN=$CACHE/bin
BRIDGE=cni0
NODE_IP=10.88.0.1
POD_CIDR=10.88.0.0/24
SERVICE_CIDR=10.96.0.0/16
PAUSE_IMAGE=k8s.gcr.io/pause:3.2
READY_TIMEOUT=${MINERPOOL_KUBE_READY_TIMEOUT:-120}
DOCKER=/usr/bin/docker
GUARD=MINERPOOL-GUARD

log() { printf 'kube-cluster: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

cmd_install() {
    "$here/dockerd.sh" install
    "$here/kube-test-env.sh" install
    local b
    for b in kube-scheduler kubelet kube-proxy pause; do
        [ -x "$BIN/$b" ] || die "$BIN/$b missing after install"
    done
}

# ---------------------------------------------------------------------------------------------
# guards and the bridge

sysctl_get() { cat "/proc/sys/${1//.//}"; }
sysctl_set() { echo "$2" >"/proc/sys/${1//.//}"; }

# Saved once per start, restored by stop.
SAVED_SYSCTLS="net.ipv4.ip_forward net.ipv4.conf.all.route_localnet"

set_guards() {
    local dir=$1 api_port=$2 s
    for s in $SAVED_SYSCTLS; do
        echo "$s $(sysctl_get "$s")" >>"$dir/sysctls"
    done
    remove_guards
    iptables -N "$GUARD-OUT"
    iptables -A "$GUARD-OUT" -d 169.254.0.0/16 -j DROP
    iptables -I OUTPUT 1 -j "$GUARD-OUT"
    iptables -N "$GUARD-FWD"
    iptables -A "$GUARD-FWD" -i "$BRIDGE" -o "$BRIDGE" -j RETURN
    iptables -A "$GUARD-FWD" -i "$BRIDGE" -j DROP
    iptables -A "$GUARD-FWD" -s "$POD_CIDR" ! -o "$BRIDGE" -j DROP
    iptables -I FORWARD 1 -j "$GUARD-FWD"
    iptables -N "$GUARD-IN"
    iptables -A "$GUARD-IN" -i lo -j RETURN
    iptables -A "$GUARD-IN" -i "$BRIDGE" -j RETURN
    iptables -A "$GUARD-IN" -p tcp --dport "$api_port" -j DROP
    iptables -I INPUT 1 -j "$GUARD-IN"
}

remove_guards() {
    local chain hook
    for chain in OUT:OUTPUT FWD:FORWARD IN:INPUT; do
        hook=${chain#*:}
        chain=$GUARD-${chain%%:*}
        while iptables -D "$hook" -j "$chain" 2>/dev/null; do :; done
        iptables -F "$chain" 2>/dev/null || true
        iptables -X "$chain" 2>/dev/null || true
    done
}

# The kubelet's and kube-proxy's chains (KUBE-*), and every rule that jumps to them, in the
# tables they use; other rules stay as they were.
remove_kube_chains() {
    local table
    for table in filter nat mangle; do
        iptables-save -t "$table" 2>/dev/null | grep -q -- 'KUBE-' || continue
        iptables-save -t "$table" | grep -v -- 'KUBE-' | iptables-restore -T "$table"
    done
}

# The bridge exists before the kubelet so that --node-ip is an address of this host.
make_bridge() {
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    ip addr replace "$NODE_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    # Service addresses never take the default route, even before kube-proxy's rules exist.
    ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
}

write_cni_config() {
    local dir=$1
    mkdir -p "$dir/cni/net.d" "$dir/cni/cache" "$dir/cni/ipam"
    cat >"$dir/cni/net.d/10-minerpool.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "minerpool",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$dir/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# ---------------------------------------------------------------------------------------------
# start / stop

spawn() {
    local dir=$1 name=$2
    shift 2
    "$@" >"$dir/$name.log" 2>&1 &
    echo "$name $!" >>"$dir/pids"
}

# The pod infra image: the static pause binary of the same Kubernetes tree.
load_pause_image() {
    "$DOCKER" image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return 0
    local tmp
    tmp=$(mktemp -d)
    install -m 0755 "$BIN/pause" "$tmp/pause"
    tar -C "$tmp" --numeric-owner --owner=0 --group=0 -c pause |
        "$DOCKER" import --change 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
    rm -rf "$tmp"
    log "imported $PAUSE_IMAGE"
}

# Containers left by a run that did not stop cleanly would hold addresses and ports.
remove_pod_containers() {
    local ids
    ids=$("$DOCKER" ps -aq --filter 'name=^k8s_' 2>/dev/null || true)
    [ -z "$ids" ] || "$DOCKER" rm -f $ids >/dev/null 2>&1 || true
}

wait_node_ready() {
    local dir=$1 deadline=$((SECONDS + READY_TIMEOUT))
    until [ "$(kubectl --kubeconfig "$dir/kube/kubeconfig" get node "$(hostname)" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; do
        check_alive "$dir"
        if [ $SECONDS -ge $deadline ]; then
            tail -n 30 "$dir/kubelet.log" >&2
            die "node not Ready after ${READY_TIMEOUT}s (see $dir/kubelet.log)"
        fi
        sleep 0.5
    done
}

check_alive() {
    local dir=$1 name pid
    while read -r name pid; do
        kill -0 "$pid" 2>/dev/null || {
            tail -n 30 "$dir/$name.log" >&2
            die "$name exited (see $dir/$name.log)"
        }
    done <"$dir/pids"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd_start() {
    local dir=${1:?usage: start DIR}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -s "$dir/pids" ] && die "$dir/pids exists: run '$0 stop $dir' first"
    local b
    for b in kube-scheduler kubelet kube-proxy pause; do
        [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run '$0 install' first"
    done
    : >"$dir/pids"
    : >"$dir/sysctls"
    local started=$SECONDS
    # The API server's port is chosen now so that its guard is in place before it listens.
    local api_port
    api_port=$(free_port)

    set_guards "$dir" "$api_port"
    make_bridge
    write_cni_config "$dir"
    printf 'nameserver 127.0.0.1\n' >"$dir/resolv.conf"

    local docker_host
    docker_host=$("$here/dockerd.sh" start "$dir/docker")
    export DOCKER_HOST=$docker_host
    remove_pod_containers
    load_pause_image

    MINERPOOL_KUBE_NODE_IP=$NODE_IP MINERPOOL_KUBE_API_PORT=$api_port \
        "$here/kube-test-env.sh" start "$dir/kube"
    local kubeconfig=$dir/kube/kubeconfig

    spawn "$dir" kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$kubeconfig" \
        --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$(free_port)" --port 0 --leader-elect=false

    mkdir -p "$dir/kubelet" "$dir/kubelet-certs"
    # Disk thresholds as small absolute amounts, not percentages: on a large, nearly full build
    # disk even 1% is gigabytes, and disk pressure evicts the test's pods and deletes the images
    # of pods not running at that moment (the jobs' image between two runs), which no registry
    # can give back. Image garbage collection is off for the same reason.
    spawn "$dir" kubelet env AWS_EC2_METADATA_DISABLED=true "$BIN/kubelet" \
        --kubeconfig "$kubeconfig" --hostname-override "$(hostname)" \
        --container-runtime docker --docker-endpoint "$docker_host" \
        --pod-infra-container-image "$PAUSE_IMAGE" \
        --network-plugin cni --cni-conf-dir "$dir/cni/net.d" --cni-bin-dir /usr/lib/cni \
        --cni-cache-dir "$dir/cni/cache" --root-dir "$dir/kubelet" --cert-dir "$dir/kubelet-certs" \
        --fail-swap-on=false --cgroup-driver cgroupfs --resolv-conf "$dir/resolv.conf" \
        --address 127.0.0.1 --read-only-port 0 --healthz-bind-address 127.0.0.1 \
        --healthz-port "$(free_port)" --node-ip "$NODE_IP" \
        --eviction-hard 'memory.available<100Mi,nodefs.available<256Mi,imagefs.available<256Mi' \
        --image-gc-high-threshold 100 --image-gc-low-threshold 99 \
        --serialize-image-pulls=false --register-node=true

    spawn "$dir" kube-proxy "$BIN/kube-proxy" --kubeconfig "$kubeconfig" \
        --hostname-override "$(hostname)" --proxy-mode iptables --cluster-cidr "$POD_CIDR" \
        --nodeport-addresses "$NODE_IP/32" --conntrack-max-per-core 0 \
        --bind-address 127.0.0.1 --healthz-bind-address "127.0.0.1:$(free_port)" \
        --metrics-bind-address "127.0.0.1:$(free_port)"

    wait_node_ready "$dir"
    # helm on PATH, as the README's commands call it.
    mkdir -p "$dir/bin"
    ln -sf "$BIN/helm" "$dir/bin/helm"
    {
        cat "$dir/kube/env"
        echo "KUBECONFIG=$kubeconfig"
        echo "DOCKER_HOST=$docker_host"
        echo "NODE_IP=$NODE_IP"
        echo "PATH=$dir/bin:$PATH"
    } >"$dir/env"
    log "ready in $((SECONDS - started)) s: node $(hostname) at $NODE_IP (env in $dir/env)"
}

cmd_stop() {
    local dir=${1:?usage: stop DIR}
    [ -d "$dir" ] || return 0
    dir=$(cd "$dir" && pwd)
    local name pid pids=()
    if [ -f "$dir/pids" ]; then
        while read -r name pid; do
            [ -n "${pid:-}" ] && pids=("$pid" "${pids[@]}")
        done <"$dir/pids"
        for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
        for pid in "${pids[@]}"; do
            local deadline=$((SECONDS + 15))
            while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
            kill -KILL "$pid" 2>/dev/null || true
        done
        rm -f "$dir/pids"
    fi
    if [ -S "$dir/docker/docker.sock" ]; then
        DOCKER_HOST=unix://$dir/docker/docker.sock remove_pod_containers
    fi
    "$here/dockerd.sh" stop "$dir/docker" || true
    "$here/kube-test-env.sh" stop "$dir/kube" || true
    "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
    remove_kube_chains || log "could not remove the KUBE-* iptables chains"
    # The kubelet leaves its pods' volumes mounted.
    if [ -d "$dir/kubelet" ]; then
        grep -o " $dir/kubelet[^ ]*" /proc/mounts | sort -r | while read -r mount; do
            umount -l "$mount" 2>/dev/null || true
        done
    fi
    ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null || true
    ip link del "$BRIDGE" 2>/dev/null || true
    remove_guards
    if [ -f "$dir/sysctls" ]; then
        local key value
        while read -r key value; do sysctl_set "$key" "$value" || true; done <"$dir/sysctls"
        rm -f "$dir/sysctls"
    fi
    rm -f "$dir/env"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:-}" ;;
*)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
