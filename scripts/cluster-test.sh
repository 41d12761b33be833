#!/usr/bin/env bash
# The cluster test: runs every command of the README's "Kubernetes" section, in order, in one
# shell, and checks after each what it must show. A README command the test does not expect (or
# one it never reaches) fails the test, so the section and the test cannot drift apart.
#
#   scripts/cluster-test.sh
#
# Needs root (the cluster makes a bridge and iptables rules). On failure it prints the cluster's
# state and the logs of every minerpool pod, then takes the cluster down.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
WAIT_SECONDS=${MINERPOOL_CLUSTER_WAIT_SECONDS:-240}
started_at=$SECONDS
work=$(mktemp -d)
OUT=$work/out

log() { printf '%s cluster-test: %s\n' "$(date +%T)" "$*" >&2; }

# The commands of the README's Kubernetes section: its sh code blocks, a line each (a trailing
# backslash continues a line; blank and comment lines are skipped).
mapfile -t COMMANDS < <(python3 - "$ROOT/README.md" <<'EOF'
import sys
text = open(sys.argv[1]).read()
start = text.index("\n## Kubernetes\n")
end = text.index("\n## ", start + 1)
in_block, pending = False, ""
for line in text[start:end].splitlines():
    if line.startswith("```"):
        in_block = line.strip() == "```sh" if not in_block else False
        continue
    if not in_block:
        continue
    line = pending + line
    if line.endswith("\\"):
        pending = line[:-1] + " "
        continue
    pending = ""
    if line.strip() and not line.lstrip().startswith("#"):
        print(line)
EOF
)
[ ${#COMMANDS[@]} -gt 0 ] || { log "no commands found in the README's Kubernetes section"; exit 1; }
next=0

# Free space where the build, the images and the cluster's pods live: the kubelet evicts pods
# when it runs out.
disk_report() {
    local paths=("$ROOT" "${CARGO_TARGET_DIR:-$ROOT/target}" "${TMPDIR:-/tmp}" "$HOME/.cache")
    local existing=() path
    for path in "${paths[@]}"; do [ -e "$path" ] && existing+=("$path"); done
    df -h --output=target,size,used,avail,pcent "${existing[@]}" 2>&1 | awk '!seen[$0]++' | sed 's/^/    /' >&2
}

diagnose() {
    log "disk:"
    disk_report
    [ -n "${KUBECONFIG:-}" ] || return 0
    log "cluster state:"
    kubectl get nodes,pods,jobs,cronjobs,deployments -A -o wide 2>&1 | sed 's/^/    /' >&2
    kubectl get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 40 | sed 's/^/    /' >&2
    if [ -n "${CLUSTER:-}" ] && [ -f "$CLUSTER/mongo/server.log" ]; then
        log "the MongoDB-compatible server's log (last 40 lines):"
        tail -n 40 "$CLUSTER/mongo/server.log" | sed 's/^/    /' >&2
    fi
    local pod
    for pod in $(kubectl get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{" "}{end}' 2>/dev/null); do
        log "logs of $pod:"
        kubectl logs -n "${pod%%/*}" "${pod#*/}" --tail=30 2>&1 | sed 's/^/    /' >&2
    done
}

teardown() {
    if [ -n "${CLUSTER:-}" ] && [ -d "$CLUSTER" ]; then
        scripts/cluster-servers.sh stop "$CLUSTER" >/dev/null 2>&1 || true
        scripts/kube-cluster.sh stop "$CLUSTER" >/dev/null 2>&1 || true
        rm -rf "$CLUSTER"
    fi
    rm -rf "$work"
}

fail() {
    log "FAIL: $*"
    diagnose
    teardown
    exit 1
}
trap 'teardown' EXIT
trap 'fail "interrupted"' INT TERM

# Runs the next README command, which must start with PREFIX; its output is shown and kept in
# $OUT for the checks that follow.
step() {
    local prefix=$1 command
    [ $next -lt ${#COMMANDS[@]} ] || fail "the README has no more commands; the test expected '$prefix…'"
    command=${COMMANDS[$next]}
    [[ "$command" == "$prefix"* ]] ||
        fail "README command $((next + 1)) is '$command'; the test expected one starting with '$prefix'"
    next=$((next + 1))
    printf '\n$ %s\n' "$command" >&2
    local status=0
    eval "$command" >"$OUT" 2>&1 || status=$?
    sed 's/^/  /' "$OUT" >&2
    [ -z "$(tail -c1 "$OUT")" ] || echo >&2
    [ $status -eq 0 ] || fail "'$command' exited with $status"
}

ok() { log "ok: $*"; }

# Waits until CONDITION (a command) succeeds, for at most SECONDS.
wait_until() {
    local what=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "$what: not within ${seconds}s"
        sleep 2
    done
    ok "$what ($((SECONDS - deadline + seconds)) s)"
}

json() { python3 -c "import json, sys; d = json.load(sys.stdin); $1"; }
jobs_of() { kubectl get jobs -l "app.kubernetes.io/instance=local,app.kubernetes.io/component=$1" "${@:2}"; }
# A Job of the given component that completed (or failed) after the given epoch second.
job_done_after() {
    local component=$1 after=$2 field=${3:-succeeded}
    jobs_of "$component" -o json | json "
import datetime
def t(s): return datetime.datetime.strptime(s, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc).timestamp()
ok = [j for j in d['items'] if j['status'].get('$field') and t(j['status']['startTime']) >= $after]
sys.exit(0 if ok else 1)"
}
api() { curl -fsS --max-time 10 "http://$NODE:8001$1"; }
node_pods() {
    kubectl get pods -l app.kubernetes.io/instance=local,app.kubernetes.io/component=node "$@"
}
ready_node_pods() {
    node_pods -o json | json "print(sum(1 for p in d['items'] if not p['metadata'].get('deletionTimestamp') and any(c['type'] == 'Ready' and c['status'] == 'True' for c in p['status'].get('conditions', []))))"
}

# ---------------------------------------------------------------------------------------------
# Images and the cluster

log "disk before the images are built:"
disk_report
step "make images"
step "export CLUSTER="
step "scripts/kube-cluster.sh start"
cluster_ready=$SECONDS
step "set -a; . \"\$CLUSTER/env\""
for binary in minerpool-node minerpool-job minerpool-operator; do
    image=minerpool/${binary/minerpool-job/minerpool-jobs}:dev
    shape=$(docker image inspect "$image" --format '{{.Config.User}} {{json .Config.Entrypoint}}') ||
        fail "image $image is not in the cluster's Docker"
    [ "$shape" = "65532:65532 [\"/usr/local/bin/$binary\"]" ] ||
        fail "$image has user and entrypoint '$shape', not 65532:65532 and /usr/local/bin/$binary"
done
ok "the three images are in the cluster's Docker, run as 65532:65532 and start their binary"
step "scripts/cluster-servers.sh start"
step "set -a; . \"\$CLUSTER/servers.env\""

# ---------------------------------------------------------------------------------------------
# The operator

step "helm install minerpool-operator"
step "kubectl -n minerpool rollout status deployment/minerpool-operator"
operator_pod=$(kubectl -n minerpool get pods -l app.kubernetes.io/name=minerpool-operator \
    -o jsonpath='{.items[?(@.status.phase=="Running")].metadata.name}')
[ -n "$operator_pod" ] || fail "no running operator pod"
wait_until "the operator pod $operator_pod holds the Lease" 60 sh -c \
    "kubectl -n minerpool get lease minerpool-operator -o jsonpath='{.spec.holderIdentity}' | grep -qx '$operator_pod'"
step "kubectl -n minerpool get lease minerpool-operator"
grep -qx "$operator_pod" "$OUT" || fail "the Lease is held by '$(cat "$OUT")', not $operator_pod"

# ---------------------------------------------------------------------------------------------
# The MinerPool

step "kubectl create secret generic minerpool-local"
mp_created=$(date +%s)
step "envsubst < examples/minerpool-test-cluster.yaml"
step "kubectl wait mp/local --for=condition=Ready"
step "kubectl get mp"
grep -Eq '^local +True +1 ' "$OUT" || fail "kubectl get mp does not show local Ready with 1 ready replica"
step "kubectl get deployments,services,configmaps,cronjobs,pods"
for name in deployment.apps/local-node service/local-node configmap/local-config \
    cronjob.batch/local-rewards cronjob.batch/local-validators cronjob.batch/local-payouts \
    cronjob.batch/local-decay; do
    grep -q "^$name " "$OUT" || fail "$name is missing"
done
ok "the node Deployment, Service, ConfigMap and four CronJobs exist"

step "NODE=\$(kubectl get service local-node"
step "curl -fsS --retry 10 --retry-connrefused --retry-delay 1 \"http://\$NODE:8001/readyz\""
grep -qx ready "$OUT" || fail "/readyz through the Service answered '$(cat "$OUT")'"
step "curl -fsS \"http://\$NODE:9090/metrics\""
grep -q '^minerpool_node_limit' "$OUT" || fail "the node's metrics port did not serve its metrics"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$NODE:8001/metrics")" = 404 ] ||
    fail "the node's HTTP port still serves /metrics"
ok "the node's metrics are on their own port, not the API's"

# Readiness reflects the database: with the server frozen, the pod leaves the Service.
mongo_pid=$(cat "$CLUSTER/mongo/pid")
kill -STOP "$mongo_pid"
wait_until "the node pod is not Ready while the database does not answer" 90 \
    sh -c "[ \"\$(kubectl get deployment local-node -o jsonpath='{.status.readyReplicas}')\" = '' ]"
kill -CONT "$mongo_pid"
wait_until "the node pod is Ready again once the database answers" 90 \
    sh -c "[ \"\$(kubectl get deployment local-node -o jsonpath='{.status.readyReplicas}')\" = 1 ]"

step "curl -fsS -H \"Authorization: Bearer \$ADMIN_TOKEN\""
grep -q "$POOL" "$OUT" || fail "registering the pool did not answer with it"
wait_until "a validators run has completed" "$WAIT_SECONDS" job_done_after validators "$mp_created"
wait_until "validator 1 has its percentage" 30 sh -c \
    "curl -fsS 'http://$NODE:8001/api/v1/validators' | grep -q '$VALIDATOR_1'"
# The node's cached registry follows the database within moments; the same PING, until it does.
wait_until "the node's registry to know validator 1" 30 sh -c \
    "ws-send 'ws://$NODE:5501' '{\"type\":\"PING\",\"validator_wallet\":\"$VALIDATOR_1\",\"ip\":\"203.0.113.7\",\"port\":5502}' | grep -qx 'SUCCESS: Pong'"
step "ws-send \"ws://\$NODE:5501\" \"{\\\"type\\\":\\\"PING\\\""
grep -qx 'SUCCESS: Pong' "$OUT" || fail "PING through the Service answered '$(cat "$OUT")'"
step "ws-send \"ws://\$NODE:5501\" \"{\\\"type\\\":\\\"TASK\\\""
grep -qx 'SUCCESS: first' "$OUT" || fail "TASK through the Service answered '$(cat "$OUT")'"
step "curl -fsS \"http://\$NODE:8001/validators\""
json "
import json as j
v = j.loads(d['$VALIDATOR_1'])
assert v['ip'] == '203.0.113.7' and float(v['percentage']) == 60.0, v
" <"$OUT" || fail "/validators does not show validator 1 with its ping and percentage"
ok "PING and TASK through the Service succeed; /validators shows the validator"

# ---------------------------------------------------------------------------------------------
# Scale, and TASKs while a pod goes away

step "kubectl scale mp/local --replicas=3"
step "kubectl rollout status deployment/local-node"
[ "$(ready_node_pods)" = 3 ] || fail "$(ready_node_pods) node pods are Ready, not 3"
ok "three node pods are Ready"
step "curl -fsS -H \"Authorization: Bearer \$ADMIN_TOKEN\""
grep -q "$POOL_2" "$OUT" || fail "registering the second pool did not answer with it"
step "PODS=\$(kubectl get pods"
[ "$(wc -w <<<"$PODS")" = 3 ] || fail "PODS names $(wc -w <<<"$PODS") pods, not 3: $PODS"
# Decay runs every minute and would take from the score mid-count: start right after one.
decay_wait_from=$(date +%s)
wait_until "a decay run has just completed" 90 job_done_after decay "$decay_wait_from"
load_started=$(date +%s)
step "validator-load \$PODS"
sleep 1
step "kubectl delete pod"
step "wait \$LOAD"
json "
assert d['succeeded'] == 90 and d['failed'] == 0, d
urls = [u for u in d['succeededByUrl'] if u != 'ws://$NODE:5501']
assert len(urls) == 3 and all(d['succeededByUrl'][u] > 0 for u in urls), d['succeededByUrl']
print('retries', d['retries'])
" <"$CLUSTER/scale.json" || fail "not every TASK succeeded on all three pods: $(cat "$CLUSTER/scale.json")"
step "curl -fsS \"http://\$NODE:8001/api/v1/pools/\$POOL_2\""
if job_done_after decay "$load_started"; then
    fail "a decay run landed during the count; the score cannot be compared"
fi
json "assert int(d['score']) == 90, d" <"$OUT" ||
    fail "pool 2 scored $(cat "$OUT"), not 90 = 90 TASKs × 1"
ok "90 TASKs to three pods, one deleted mid-way: all succeeded, score exactly 90"
wait_until "three node pods are Ready again" 120 sh -c "[ \"\$(kubectl get deployment local-node -o jsonpath='{.status.readyReplicas}')\" = 3 ]"
wait_until "kubectl get mp shows 3 ready replicas" 60 sh -c "kubectl get mp | grep -Eq '^local +True +3 '"
step "kubectl get mp"
grep -Eq '^local +True +3 +[0-9]+[smh]' "$OUT" ||
    fail "kubectl get mp does not show 3 ready replicas and when rewards were last scheduled"

# ---------------------------------------------------------------------------------------------
# The jobs

for job in rewards validators payouts decay; do
    wait_until "a $job run has completed" "$WAIT_SECONDS" job_done_after "$job" "$mp_created"
done
wait_until "the pool has been paid on chain (a payout 3 blocks deep)" 300 sh -c \
    "curl -fsS 'http://$NODE:8001/api/v1/balances/$POOL' | python3 -c 'import json,sys; sys.exit(0 if float(json.load(sys.stdin)[\"paid\"]) > 0 else 1)'"
step "kubectl get cronjobs,jobs"
for job in rewards validators payouts decay; do
    grep -Eq "^job.batch/local-$job-[0-9]+ +1/1 " "$OUT" || fail "no completed $job Job listed"
done
step "DONE=\$(kubectl get jobs"
[ -n "$DONE" ] || fail "no completed rewards Job found"
step "kubectl logs \"job/\$DONE\""
json "assert d['job'] == 'rewards' and d['outcome'] == 'succeeded', d" <"$OUT" ||
    fail "the rewards run's log does not end with its JSON summary"
for job in validators payouts decay; do
    name=$(jobs_of "$job" -o jsonpath='{range .items[?(@.status.succeeded)]}{.metadata.name}{"\n"}{end}' | tail -n 1)
    kubectl logs "job/$name" | tail -n 1 |
        json "assert d['job'] == '$job' and d['outcome'] == 'succeeded', d" ||
        fail "the log of $name does not end with its JSON summary"
done
ok "each job's log ends with its one-line JSON summary"
step "kubectl get mp local -o jsonpath='{.status.jobs}"
json "
for job in ('rewards', 'validators', 'payouts', 'decay'):
    assert d[job].get('lastScheduleTime'), (job, d)
" <"$OUT" || fail "the MinerPool status lacks a job's last schedule"
step "curl -fsS \"http://\$NODE:8001/api/v1/distributions?limit=1\""
json "
x = d['distributions'][0]
assert any(l['kind'] == 'pool' and l['address'] == '$POOL' for l in x['lines']), x
" <"$OUT" || fail "the latest distribution does not credit the pool"
step "curl -fsS \"http://\$NODE:8001/api/v1/balances/\$POOL\""
json "assert float(d['paid']) > 0, d" <"$OUT" || fail "the pool's balance shows nothing paid"
ok "every CronJob ran its image; credited and paid"

# ---------------------------------------------------------------------------------------------
# A failing chain

fail_from=$(date +%s)
step "curl -fsS -X POST \"\$CHAIN_URL/sim/fail\""
wait_until "a rewards run has failed" "$WAIT_SECONDS" job_done_after rewards "$fail_from" failed
step "FAILED=\$(kubectl get jobs"
[ -n "$FAILED" ] || fail "no failed rewards Job found"
step "kubectl logs \"job/\$FAILED\""
grep -q '500' "$OUT" || fail "the failed run's log does not give the chain's answer"
clear_from=$(date +%s)
step "curl -fsS -X DELETE \"\$CHAIN_URL/sim/fail\""
wait_until "the next rewards run succeeded" "$WAIT_SECONDS" job_done_after rewards "$clear_from"
step "kubectl get jobs -l app.kubernetes.io/instance=local,app.kubernetes.io/component=rewards"
grep -q "^$FAILED " "$OUT" || fail "the failed Job is no longer listed"
step "kubectl get configmap local-config"
step "minerpool-job audit"
json "assert d['job'] == 'audit' and d['outcome'] == 'succeeded', d" <"$OUT" ||
    fail "the audit did not pass"
ok "a failed run shows as a failed Job with its reason; the next succeeded; the books balance"

# ---------------------------------------------------------------------------------------------
# Placement by pod overrides, and the disruption budget

step "kubectl get pdb local-node"
grep -Eq '^local-node +N/A +1 ' "$OUT" || fail "the node's budget is not maxUnavailable 1: $(cat "$OUT")"
step "kubectl patch mp/local --type merge -p '{\"spec\":{\"node\":{\"podOverrides\""
wait_until "the roll's new node pod waits for a machine with the label" 90 sh -c \
    "kubectl get pods -l app.kubernetes.io/instance=local,app.kubernetes.io/component=node -o jsonpath='{range .items[*]}{.status.conditions[?(@.type==\"PodScheduled\")].reason}{\"\\n\"}{end}' | grep -qx Unschedulable"
step "kubectl get pods -l app.kubernetes.io/instance=local,app.kubernetes.io/component=node --field-selector=status.phase=Pending"
grep -q Pending "$OUT" || fail "no node pod is Pending for its nodeSelector"
[ "$(ready_node_pods)" = 3 ] || fail "the pods of the old spec did not keep serving: $(ready_node_pods) Ready"
ok "a new node pod waits for a machine labelled minerpool.io/pool=yes; the old three serve"
step "MACHINE=\$(kubectl get nodes"
step "kubectl label node"
step "kubectl rollout status deployment/local-node"
placed=$(node_pods -o json | json "
pods = [p for p in d['items'] if not p['metadata'].get('deletionTimestamp')]
ok = [p for p in pods if p['spec'].get('nodeSelector', {}).get('minerpool.io/pool') == 'yes'
      and any(t.get('key') == 'minerpool.io/dedicated' for t in p['spec'].get('tolerations', []))
      and p['spec'].get('nodeName')]
print(len(ok))")
[ "$placed" = 3 ] || fail "$placed node pods carry the selector and the toleration and are placed, not 3"
ok "three node pods placed by the nodeSelector, each with the toleration"
step "kubectl taint node"
step "kubectl run untolerated"
wait_until "the pod without the toleration is refused a place" 60 sh -c \
    "kubectl get pod untolerated -o jsonpath='{.status.conditions[0].reason}' | grep -qx Unschedulable"
step "kubectl get pod untolerated"
grep -qx Unschedulable "$OUT" || fail "a pod without the toleration was placed: $(cat "$OUT")"
[ "$(ready_node_pods)" = 3 ] || fail "the node pods did not stay on the tainted machine"
ok "the taint keeps out a pod without the toleration; the node's pods stay"
# A stopping pod would be let go without the budget being asked: only the three current pods.
wait_until "the node pods of the earlier spec are gone" 120 sh -c \
    "[ \"\$(kubectl get pods -l app.kubernetes.io/instance=local,app.kubernetes.io/component=node -o name | wc -l)\" = 3 ]"
wait_until "the budget allows one disruption" 90 sh -c \
    "[ \"\$(kubectl get pdb local-node -o jsonpath='{.status.disruptionsAllowed}')\" = 1 ]"
step "EVICT=\$(kubectl get pods"
step "for P in \$EVICT; do kubectl create --raw"
[ "$(grep -c '^evicted: ' "$OUT")" = 1 ] && [ "$(grep -c '^refused: ' "$OUT")" = 1 ] ||
    fail "the budget did not let exactly one of two evictions through"
grep -q 'disruption budget' "$OUT" || fail "the refused eviction does not name the budget"
ok "of two node pods evicted at once, the budget let one go and refused the other"
step "kubectl taint node"
step "kubectl delete pod untolerated"
step "kubectl rollout status deployment/local-node"
wait_until "three node pods are Ready after the eviction" 120 sh -c "[ \"\$(kubectl get deployment local-node -o jsonpath='{.status.readyReplicas}')\" = 3 ]"

# ---------------------------------------------------------------------------------------------
# Chaos: kills, a frozen database, a chain down, evictions; then the books

chaos_started=$SECONDS
step "scripts/chaos.py --node"
for row in "kills: node-pod" "kills: job-pod" "kills: operator-pod" "kills: db-freeze" \
    "kills: chain-down" "kills: evict-two" "TASKs sent / succeeded / retried" "units paid = on chain"; do
    grep -Eq "^$row +\| [1-9]" "$OUT" || fail "the chaos table has no '$row' with a count"
done
ok "chaos: nothing lost, nothing counted twice, the books match the chain ($((SECONDS - chaos_started)) s)"

# ---------------------------------------------------------------------------------------------
# Upgrades

step "docker tag minerpool/minerpool-operator:dev minerpool/minerpool-operator:dev-2"
step "helm upgrade minerpool-operator"
step "kubectl -n minerpool rollout status deployment/minerpool-operator"
new_operator=$(kubectl -n minerpool get pods -l app.kubernetes.io/name=minerpool-operator \
    -o jsonpath='{range .items[?(@.spec.containers[0].image=="minerpool/minerpool-operator:dev-2")]}{.metadata.name}{"\n"}{end}' |
    head -n1)
[ -n "$new_operator" ] && [ "$new_operator" != "$operator_pod" ] ||
    fail "no operator pod runs minerpool/minerpool-operator:dev-2"
wait_until "the upgraded operator $new_operator holds the Lease" 90 sh -c \
    "kubectl -n minerpool get lease minerpool-operator -o jsonpath='{.spec.holderIdentity}' | grep -qx '$new_operator'"
old_pods=$(node_pods -o jsonpath='{.items[*].metadata.name}')
step "validator-load --url \"ws://\$NODE:5501\""
sleep 2
step "kubectl patch mp/local"
step "kubectl rollout status deployment/local-node"
for pod in $old_pods; do
    if node_pods -o name | grep -qx "pod/$pod"; then
        # Its grace period (35 s) plus the kubelet's own time on a busy machine.
        wait_until "old node pod $pod is gone" 120 sh -c "! kubectl get pod $pod"
    fi
done
ok "the node pods were replaced"
step "wait \$LOAD"
json "
assert d['failed'] == 0 and d['succeeded'] > 0, d
print(d['succeeded'], 'TASKs during the roll, none refused')
" <"$CLUSTER/roll.json" || fail "TASKs failed while the node rolled: $(cat "$CLUSTER/roll.json")"

# MINERPOOL_ROLL_REPEAT=N rolls the node N - 1 more times under the same load on this warm
# cluster, each roll a new spec (maxConnections 1001, 1002, …), and fails on any failed TASK.
repeat=${MINERPOOL_ROLL_REPEAT:-1}
for ((roll = 2; roll <= repeat; roll++)); do
    validator-load --url "ws://$NODE:5501" --pool "$POOL" --validator "$VALIDATOR_1" --prefix "roll$roll" \
        --seconds 60 --per-second 20 --concurrency 4 >"$CLUSTER/roll-$roll.json" &
    load=$!
    # The pods about to be replaced: their logs end with their shutdown report, and are gone
    # with them.
    for pod in $(node_pods -o jsonpath='{.items[*].metadata.name}'); do
        kubectl logs -f "$pod" >"$CLUSTER/roll-$roll-$pod.log" 2>&1 &
    done
    sleep 2
    kubectl patch mp/local --type merge -p "{\"spec\":{\"node\":{\"maxConnections\":$((999 + roll))}}}" >&2 ||
        fail "patching for roll $roll"
    kubectl rollout status deployment/local-node --timeout=180s >&2 || fail "roll $roll did not finish"
    wait $load
    counts=$(json "print('tasks', d['tasks'], 'succeeded', d['succeeded'], 'failed', d['failed'])" <"$CLUSTER/roll-$roll.json")
    log "roll $roll of $repeat: $counts"
    for pod_log in "$CLUSTER/roll-$roll-"*.log; do
        log "$(basename "$pod_log" .log): $(grep -o '"message":"stopped"[^}]*' "$pod_log" || echo 'no shutdown report')"
    done
    if ! json "assert d['failed'] == 0 and d['succeeded'] > 0, d" <"$CLUSTER/roll-$roll.json"; then
        for pod_log in "$CLUSTER/roll-$roll-"*.log; do
            log "log of the replaced pod $(basename "$pod_log" .log) (warnings and the end):"
            { grep -E '"level":"(WARN|ERROR)"' "$pod_log" | tail -n 20; tail -n 5 "$pod_log"; } | sed 's/^/    /' >&2
        done
        fail "TASKs failed in roll $roll: $(cat "$CLUSTER/roll-$roll.json")"
    fi
done
[ "$repeat" -le 1 ] || ok "the node rolled $repeat times under load; no TASK failed"

# ---------------------------------------------------------------------------------------------
# Signed messages, then a MinerPool that takes only those

step "minerpool-validator task"
grep -qx 'SUCCESS: signed-1' "$OUT" || fail "a signed TASK through the Service answered '$(cat "$OUT")'"
step "curl -fsS \"http://\$NODE:8001/api/v1/validators/\$VALIDATOR_2\""
json "assert d['signs'] is True and d['signedSince'], d" <"$OUT" ||
    fail "the API does not show validator 2 signing: $(cat "$OUT")"
ok "a signed TASK through the Service succeeds; the API shows the validator signing"
step "kubectl patch mp/local --type merge -p '{\"spec\":{\"node\":{\"protocol\":\"signed\"}}}'"
step "kubectl rollout status deployment/local-node"
# A pod of the old spec may still be finishing its connections; none may take the next TASK.
wait_until "no node pod of the legacy spec is left" 120 sh -c \
    "[ -z \"\$(kubectl get pods -l app.kubernetes.io/instance=local,app.kubernetes.io/component=node -o jsonpath='{range .items[*]}{.metadata.deletionTimestamp}{end}')\" ]"
step "ws-send \"ws://\$NODE:5501\" \"{\\\"type\\\":\\\"TASK\\\""
grep -qx 'ERROR: Signature required' "$OUT" || fail "an unsigned TASK under protocol signed answered '$(cat "$OUT")'"
step "minerpool-validator task"
grep -qx 'SUCCESS: signed-2' "$OUT" || fail "a signed TASK under protocol signed answered '$(cat "$OUT")'"
ok "under protocol signed an unsigned TASK is refused and a signed one succeeds"

# ---------------------------------------------------------------------------------------------
# Down

step "kubectl delete mp/local"
step "helm uninstall minerpool-operator"
step "scripts/cluster-servers.sh stop"
step "scripts/kube-cluster.sh stop"
[ $next -eq ${#COMMANDS[@]} ] ||
    fail "the README has $((${#COMMANDS[@]} - next)) commands the test never ran, from: ${COMMANDS[$next]}"
log "passed: ${#COMMANDS[@]} README commands in $((SECONDS - started_at)) s (cluster ready after $((cluster_ready - started_at)) s)"
