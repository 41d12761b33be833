#!/usr/bin/env bash
# make demo: minerpool on this machine, no cluster. Starts a MongoDB-compatible server, the uPow
# chain simulator (a block with iNode income every few seconds, confirming pending transactions),
# and minerpool-node in standalone mode with short job intervals, paying for real through the
# simulator with a freshly generated wallet key; registers a pool, drives three validators over
# the WebSocket port (A signs its messages with minerpool-validator, B sends legacy unsigned ones,
# C stays idle), and prints what happens. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

TOKEN=demo-admin-token
DURATION=${DEMO_SECONDS:-0}   # 0: until Ctrl-C

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/minerpool-demo.XXXXXX")
pids=()
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "==> stopping what the demo started"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    scripts/mongo-test-server.sh stop "$run_dir/mongo" || true
    rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # URL
    for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done
    echo "no answer from $1" >&2; return 1
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }

echo "==> building minerpool (first time: a few minutes)"
cargo build --quiet -p minerpool-node -p minerpool-jobs -p minerpool-tests -p minerpool-validator --bins
bin=${CARGO_TARGET_DIR:-target}/debug

echo "==> generating a fresh iNode wallet key (it signs the payouts) and payable addresses"
read -r WALLET_KEY INODE < <("$bin/chain-sim" --new-wallet)
echo "    iNode wallet $INODE"
# Payouts go on chain, so every payee must be a real P-256 address: addresses of fresh keys.
new_address() { "$bin/chain-sim" --new-wallet | cut -d' ' -f2; }
REWARD=$(new_address)
POOL=$(new_address)
# Validator A signs its messages, so the demo keeps its key (in the run dir, owner-only).
read -r VALIDATOR_A_KEY VALIDATOR_A < <("$bin/chain-sim" --new-wallet)
(umask 077 && echo "$VALIDATOR_A_KEY" >"$run_dir/validator-a.key")
VALIDATORS=("$VALIDATOR_A" "$(new_address)" "$(new_address)")

echo "==> starting the MongoDB-compatible test server (SecantusDB, a one-node replica set)"
scripts/mongo-test-server.sh install
MONGODB_URI=$(scripts/mongo-test-server.sh start "$run_dir/mongo")
export MONGODB_URI

echo "==> starting the uPow chain simulator (a block paying the iNode every 4 s, mining what is pending)"
"$bin/chain-sim" --generate-for "$INODE" --every 4 --start-height 20001 >"$run_dir/sim.url" 2>"$run_dir/sim.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$run_dir/sim.url" ] && break; sleep 0.1; done
SIM=$(head -1 "$run_dir/sim.url")
curl -fsS -X PUT "$SIM/sim/validators" -H 'content-type: application/json' -d "[
  {\"address\": \"${VALIDATORS[0]}\", \"stake\": \"600\"},
  {\"address\": \"${VALIDATORS[1]}\", \"stake\": \"300\"},
  {\"address\": \"${VALIDATORS[2]}\", \"stake\": \"100\"}]"

HTTP_PORT=$(free_port)
WS_PORT=$(free_port)
cat >"$run_dir/minerpool.yaml" <<YAML
chain:
  apiUrl: $SIM
  allowInsecureHttp: true        # the simulator speaks plain http on loopback
  inodeWallet: $INODE
  rewardAddress: $REWARD
rewards:
  startHeight: 20001
  confirmations: 3               # the demo's chain makes a block every 4 s (default: 10)
payouts:
  sender: upow
  minimumPayout: "1"
node:
  httpAddress: 127.0.0.1:$HTTP_PORT
  websocketAddress: 127.0.0.1:$WS_PORT
schedule:
  rewardsSeconds: 5
  payoutsSeconds: 10
  validatorsSeconds: 10
  decaySeconds: 30
YAML
API=http://127.0.0.1:$HTTP_PORT
WS=ws://127.0.0.1:$WS_PORT

echo "==> starting minerpool-node standalone (servers + rewards 5 s, payouts 10 s, validators 10 s, decay 30 s)"
MINERPOOL_ADMIN_TOKEN=$TOKEN MINERPOOL_WALLET_KEY=$WALLET_KEY "$bin/minerpool-node" standalone --config "$run_dir/minerpool.yaml" 2>"$run_dir/node.log" &
pids+=($!)
wait_for "$API/readyz"

echo "==> registering pool $POOL through the admin API"
curl -fsS -X POST "$API/api/v1/pools" -H "Authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d "{\"address\": \"$POOL\"}"
echo

cat <<TEXT

minerpool is running. Open the dashboard: $API/
(its figures move as the demo runs: it refreshes itself every 10 s). Or look for yourself:
  curl $API/validators                        # legacy shape, what pools read
  curl $API/api/v1/stats                      # height, received, credited, pending, paid
  curl $API/api/v1/balances/$POOL
  curl $API/api/v1/distributions?limit=1
  curl $API/api/v1/payouts/$POOL               # payout batches and their transactions
  curl "$SIM/get_address_info?address=$INODE&show_pending=true"   # the wallet on chain
  curl $API/metrics
  logs: $run_dir/node.log
Ctrl-C stops everything.

validator A ${VALIDATORS[0]:0:8}… signs its messages (minerpool-validator, key in $run_dir/validator-a.key)
validator B ${VALIDATORS[1]:0:8}… sends legacy unsigned messages (ws-send)
validator C ${VALIDATORS[2]:0:8}… only PINGs (legacy), it reports no work
TEXT

started=$(date +%s)
round=0
while :; do
    round=$((round + 1))
    # Validator A: signed PING and TASK (ts, nonce and an ECDSA signature by its own key).
    "$bin/minerpool-validator" ping --node "$WS" --key-file "$run_dir/validator-a.key" \
        --inode "$INODE" --ip 10.0.0.1 --port 5502 >/dev/null || true
    reply=$("$bin/minerpool-validator" task --node "$WS" --key-file "$run_dir/validator-a.key" \
        --inode "$INODE" --pool "$POOL" --val-id "$round" || true)
    echo "TASK round $round from ${VALIDATORS[0]:0:8}… (A, signed): $reply"
    if [ "$round" = 1 ]; then
        # Having signed once, A is protected: an unsigned message in its name is refused.
        reply=$("$bin/minerpool-validator" task --unsigned --node "$WS" --key-file "$run_dir/validator-a.key" \
            --inode "$INODE" --pool "$POOL" --val-id forged || true)
        echo "an unsigned TASK in A's name (no downgrade once A signs): $reply"
    fi
    # Validators B and C: legacy unsigned messages; C reports no work and its share goes unallocated.
    for v in "${VALIDATORS[@]:1:2}"; do
        "$bin/ws-send" "$WS" "{\"type\":\"PING\",\"validator_wallet\":\"$v\",\"ip\":\"10.0.0.1\",\"port\":5502}" >/dev/null || true
    done
    v=${VALIDATORS[1]}
    reply=$("$bin/ws-send" "$WS" "{\"type\":\"TASK\",\"pool_wallet\":\"$POOL\",\"validator_wallet\":\"$v\",\"val_id\":\"$round\"}" || true)
    echo "TASK round $round from ${v:0:8}… (B, unsigned): $reply"
    sleep 5
    echo "--- $(date +%T) ----------------------------------------------------------"
    curl -fsS "$API/api/v1/stats" | json 'print("scanned to block", d.get("lastScannedHeight"), "| received", d.get("received"), "| credited", d.get("credited"), "| pending", d.get("pending"), "| paid", d.get("paid"))' || true
    curl -fsS "$API/api/v1/distributions?limit=1" | json '
for x in (d.get("distributions") or [])[:1]:
    print("latest distribution", x.get("blocks") or x.get("id"), "received", x.get("received"))
    for l in x.get("lines", []):
        print("   ", l.get("kind"), l.get("address", "")[:10] + "…", l.get("amount") or l.get("units"))' || true
    curl -fsS "$API/validators" | json '
import json as j
for a, v in d.items():
    v = j.loads(v); print("validator", a[:10] + "…", "percentage", v["percentage"], "score", v["score"], "ping", v["ping"])' || true
    for a in "$POOL" "$REWARD" "${VALIDATORS[@]}"; do
        curl -fsS "$API/api/v1/balances/$a" | json 'print("balance", d["address"][:10] + "…", "pending", d["pending"], "paid", d["paid"])' || true
    done
    # One line per payout batch newly confirmed on chain (its transaction is in a simulator block).
    for a in "$POOL" "$REWARD" "${VALIDATORS[@]}"; do
        curl -fsS "$API/api/v1/payouts/$a" | json '
for p in d.get("payouts", []):
    if p.get("state") == "confirmed": print(p["batch"], p["txHash"])' || true
    done | sort -u | while read -r batch tx; do
        grep -qx "$batch" "$run_dir/confirmed" 2>/dev/null && continue
        echo "$batch" >>"$run_dir/confirmed"
        block=$(curl -fsS "$SIM/get_transaction?tx_hash=$tx" | json 'print(d["result"]["block_no"])' || echo "?")
        echo "payout batch $batch confirmed: transaction ${tx:0:16}… in block $block"
    done
    if [ "$DURATION" -gt 0 ] && [ $(( $(date +%s) - started )) -ge "$DURATION" ]; then
        break
    fi
done
