#!/usr/bin/env bash
# What a MinerPool in the one-node test cluster talks to, run on the host at the bridge address
# (pods reach the host there; there is no cluster DNS): the MongoDB-compatible test server and
# the uPow chain simulator, a block paying a fresh iNode wallet every 2 s.
#
#   scripts/cluster-servers.sh start DIR   DIR is the cluster's (scripts/kube-cluster.sh start DIR)
#   scripts/cluster-servers.sh stop DIR
#
# Puts ws-send, validator-load and minerpool-job in DIR/bin (on the PATH of DIR/env) and writes
# DIR/servers.env: MONGODB_URI and CHAIN_URL (as pods name them), a fresh wallet
# (INODE_WALLET, WALLET_KEY), REWARD_ADDRESS, POOL, POOL_2, VALIDATOR_1..3 (stakes 600, 370 and
# 30 in the simulator: percentages 60, 37 and 3, so one TASK scores 12, 8 and 1) and ADMIN_TOKEN.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CARGO=${CARGO:-cargo}

log() { printf 'cluster-servers: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

cmd_start() {
    local dir=${1:?usage: start DIR}
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/env" ] || die "$dir/env not found: start the cluster first (scripts/kube-cluster.sh start $dir)"
    local node_ip
    node_ip=$(sed -n 's/^NODE_IP=//p' "$dir/env")
    [ -n "$node_ip" ] || die "no NODE_IP in $dir/env"

    # The simulator, the validators' clients, and minerpool-job for the audit from the host.
    # Every binary of the workspace, with the features the tests build them with: `--examples`
    # (there are none) has cargo resolve them with the dev-dependencies, as `cargo nextest run
    # --workspace` does, so after `make test`'s test run this compiles nothing.
    (cd "$ROOT" && $CARGO build --quiet --workspace --bins --examples >&2)
    local bin=${CARGO_TARGET_DIR:-$ROOT/target}/debug
    # On the cluster's PATH (DIR/bin, see DIR/env): the validators' clients and the audit.
    mkdir -p "$dir/bin"
    install -m 0755 "$bin/ws-send" "$bin/validator-load" "$bin/minerpool-validator" "$bin/minerpool-job" "$dir/bin/"
    local wallet_key inode
    read -r wallet_key inode < <("$bin/chain-sim" --new-wallet)
    new_address() { "$bin/chain-sim" --new-wallet | cut -d' ' -f2; }

    local mongodb_uri
    mongodb_uri=$(MINERPOOL_MONGO_HOST=$node_ip "$ROOT/scripts/mongo-test-server.sh" start "$dir/mongo")

    "$bin/chain-sim" --listen "$node_ip:0" --generate-for "$inode" --every 2 \
        --start-height 20001 >"$dir/chain-sim.url" 2>"$dir/chain-sim.log" &
    echo $! >"$dir/chain-sim.pid"
    local chain_url=
    for _ in $(seq 1 100); do
        chain_url=$(head -n1 "$dir/chain-sim.url" 2>/dev/null || true)
        [ -n "$chain_url" ] && break
        kill -0 "$(cat "$dir/chain-sim.pid")" 2>/dev/null || die "chain-sim exited (see $dir/chain-sim.log)"
        sleep 0.1
    done
    [ -n "$chain_url" ] || die "chain-sim printed no URL"

    local v1 v2 v2_key v3
    v1=$(new_address)
    # Validator 2 signs its messages: its key is kept, readable by this user only.
    read -r v2_key v2 < <("$bin/chain-sim" --new-wallet)
    (umask 077 && printf '%s\n' "$v2_key" >"$dir/validator-2.key")
    v3=$(new_address)
    curl -fsS -X PUT "$chain_url/sim/validators" -H 'content-type: application/json' -d "[
      {\"address\": \"$v1\", \"stake\": \"600\"},
      {\"address\": \"$v2\", \"stake\": \"370\"},
      {\"address\": \"$v3\", \"stake\": \"30\"}]" >/dev/null

    cat >"$dir/servers.env" <<EOF
MONGODB_URI=$mongodb_uri
CHAIN_URL=$chain_url
INODE_WALLET=$inode
WALLET_KEY=$wallet_key
REWARD_ADDRESS=$(new_address)
POOL=$(new_address)
POOL_2=$(new_address)
VALIDATOR_1=$v1
VALIDATOR_2=$v2
VALIDATOR_2_KEY=$dir/validator-2.key
VALIDATOR_3=$v3
ADMIN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
EOF
    chmod 600 "$dir/servers.env"
    log "MongoDB-compatible server $mongodb_uri, chain simulator $chain_url (env in $dir/servers.env)"
}

cmd_stop() {
    local dir=${1:?usage: stop DIR}
    [ -d "$dir" ] || return 0
    if [ -f "$dir/chain-sim.pid" ]; then
        kill -TERM "$(cat "$dir/chain-sim.pid")" 2>/dev/null || true
        rm -f "$dir/chain-sim.pid"
    fi
    "$ROOT/scripts/mongo-test-server.sh" stop "$dir/mongo" || true
}

case "${1:-}" in
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:-}" ;;
*)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
