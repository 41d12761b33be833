#!/usr/bin/env bash
# Checks the minerpool-operator Helm chart and the examples against a real API server.
#
#   scripts/chart-test.sh DIR
#
# DIR is a running test environment (scripts/kube-test-env.sh start DIR); its env file gives the
# kubeconfig and helm. Prints each check and exits non-zero if any failed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CHART=$ROOT/charts/minerpool-operator
CRD=$CHART/crds/minerpool.yaml

dir=${1:?usage: chart-test.sh DIR (a directory started by scripts/kube-test-env.sh start)}
[ -f "$dir/env" ] || {
    echo "chart-test: $dir/env not found: start the environment with scripts/kube-test-env.sh start $dir" >&2
    exit 2
}
# shellcheck disable=SC1091
. "$dir/env"
export KUBECONFIG=$MINERPOOL_TEST_KUBECONFIG
: "${HELM:?HELM missing from $dir/env}"

suffix=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
release=chart-test-$suffix
ns=minerpool-chart-$suffix
watched=("minerpool-watch-a-$suffix" "minerpool-watch-b-$suffix")
sa=system:serviceaccount:$ns:$release-minerpool-operator

passed=0
failed=0
work=$(mktemp -d)

# Runs a command as one named check; its output is shown only when it fails.
check() {
    local name=$1
    shift
    if "$@" >"$work/out" 2>&1; then
        printf 'ok    %s\n' "$name"
        passed=$((passed + 1))
    else
        printf 'FAIL  %s\n' "$name"
        sed 's/^/      /' "$work/out"
        failed=$((failed + 1))
    fi
}

# The opposite of check: the command must fail (used for permissions that must be denied).
check_denied() {
    local name=$1
    shift
    if "$@" >"$work/out" 2>&1; then
        printf 'FAIL  %s (allowed)\n' "$name"
        failed=$((failed + 1))
    else
        printf 'ok    %s\n' "$name"
        passed=$((passed + 1))
    fi
}

cleanup() {
    "$HELM" uninstall "$release" -n "$ns" >/dev/null 2>&1 || true
    "$HELM" uninstall "$release-ns" -n "$ns" >/dev/null 2>&1 || true
    kubectl delete namespace "$ns" "${watched[@]}" --wait=false >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

render() { "$HELM" template "$release" "$CHART" -n "$ns" "$@"; }
server_dry_run() { render "$@" | kubectl apply --dry-run=server -f - >/dev/null; }
# kubectl's client-side schema of Kubernetes 1.20 has no x-kubernetes-validations (the CEL
# rule), so the CRD is checked by the server alone; the server drops the rule it cannot use.
crd_dry_run() { kubectl apply --dry-run=server --validate=false -f "$CRD" >/dev/null; }
can() { kubectl auth can-i "$@" --as "$sa"; }

# The rendered operator Deployment, as the API server would store it, reduced by a JSONPath.
deployment_field() {
    local path=$1
    shift
    "$HELM" template "$release" "$CHART" -n "$ns" --show-only templates/deployment.yaml "$@" |
        kubectl apply --dry-run=server -o jsonpath="$path" -f -
}
# field_is JSONPATH EXPECTED [helm args...]
field_is() {
    local path=$1 want=$2 got
    shift 2
    got=$(deployment_field "$path" "$@")
    [ "$got" = "$want" ] || {
        echo "$path is '$got', expected '$want'"
        return 1
    }
}

namespaced=(--set "watchNamespaces={${watched[0]},${watched[1]}}" --set replicas=2)

check "helm lint --strict (defaults)" "$HELM" lint --strict "$CHART"
check "helm lint --strict (watched namespaces, 2 replicas)" \
    "$HELM" lint --strict "$CHART" "${namespaced[@]}"
check_denied "values schema rejects replicas=-1" "$HELM" template x "$CHART" --set replicas=-1
check_denied "values schema rejects an unknown value" "$HELM" template x "$CHART" --set nope=1

# Monitoring: the ServiceMonitor, PrometheusRule and dashboard ConfigMap are checked as rendered,
# so the API server needs no Prometheus Operator CRDs.
mon=$work/monitoring
mkdir -p "$mon"
# YAML to JSON without a server or the objects' CRDs: removing a label no object carries changes
# nothing. Several objects come out as concatenated JSON documents.
to_json() { kubectl label --local -f - -o json minerpool.io/chart-test-none-; }
# The monitoring checks, in Python: the JSON of the rendered objects on stdin, the check and its
# arguments in argv. Exits non-zero with the reasons; `names` lists the objects instead.
cat >"$mon/check.py" <<'EOF'
import json
import re
import sys

# Every metric the node and the operator export (node/src/metrics.rs, operator/src/metrics.rs;
# prometheus-client appends _total to counters), besides kube-state-metrics' kube_* and up.
KNOWN = set("""
minerpool_node_websocket_messages_total minerpool_node_websocket_connections_open
minerpool_node_websocket_connections_refused_total minerpool_node_http_connections_refused_total
minerpool_node_http_requests_total minerpool_node_http_request_duration_seconds_bucket
minerpool_node_task_groups_total minerpool_node_task_group_messages_total
minerpool_node_task_groups_failed_total minerpool_node_registry_loads_total minerpool_node_limit
minerpool_node_job_last_run_start_seconds minerpool_node_job_last_run_duration_seconds
minerpool_node_job_consecutive_failures minerpool_node_job_last_run_failed
minerpool_node_job_last_success_seconds minerpool_node_stats_as_of_seconds
minerpool_node_job_last_run_blocked minerpool_node_job_last_run_rate_limited_seconds
minerpool_node_money_units minerpool_node_payouts_batches_in_flight
minerpool_node_payouts_oldest_unconfirmed_seconds minerpool_node_payouts_held_balances
minerpool_node_last_scanned_height minerpool_node_chain_height_seen
minerpool_node_wallet_foreign_spends minerpool_node_wallet_foreign_spend_units
minerpool_operator_reconciles_total minerpool_operator_reconcile_failures_total
minerpool_operator_invalid_specs_total minerpool_operator_reconcile_duration_seconds_bucket
minerpool_operator_leader
""".split())
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "Inf", "NaN"}


def objects(text):
    decoder, i, out = json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return out
        obj, i = decoder.raw_decode(text, i)
        out.extend(obj["items"] if obj.get("kind") == "List" else [obj])


def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\$\{?\w+\}?", "", e)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\s*(\()?", e):
        if not m.group(2) and m.group(1) not in KEYWORDS:
            names.add(m.group(1))
    return names


def unknown(exprs):
    bad = set()
    for expr in exprs:
        bad |= {n for n in metric_names(expr)
                if n not in KNOWN and not n.startswith("kube_") and n != "up"}
    return sorted(bad)


def one(objs, kind):
    found = [o for o in objs if o["kind"] == kind]
    if len(found) != 1:
        sys.exit(f"{len(found)} {kind} rendered, expected 1")
    return found[0]


def service_monitor(objs, ns, extra_label):
    sm, svc = one(objs, "ServiceMonitor"), one(objs, "Service")
    errors = []
    labels = svc["metadata"]["labels"]
    for k, v in sm["spec"]["selector"]["matchLabels"].items():
        if labels.get(k) != v:
            errors.append(f"selector {k}={v} does not match the Service ({labels.get(k)})")
    if sm["spec"].get("namespaceSelector") != {"matchNames": [ns]}:
        errors.append(f"namespaceSelector {sm['spec'].get('namespaceSelector')}, expected {ns}")
    ports = [p["port"] for p in sm["spec"]["endpoints"]]
    if ports != ["metrics"] or "metrics" not in [p["name"] for p in svc["spec"]["ports"]]:
        errors.append(f"endpoint ports {ports}, the Service's {svc['spec']['ports']}")
    k, v = extra_label.split("=", 1)
    if sm["metadata"]["labels"].get(k) != v:
        errors.append(f"label {extra_label} missing: {sm['metadata']['labels']}")
    return errors


def prometheus_rule(objs, extra_label):
    rule = one(objs, "PrometheusRule")
    errors = []
    k, v = extra_label.split("=", 1)
    if rule["metadata"]["labels"].get(k) != v:
        errors.append(f"label {extra_label} missing: {rule['metadata']['labels']}")
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    for r in rules:
        if r.get("labels", {}).get("severity") not in ("warning", "critical"):
            errors.append(f"{r['alert']}: no severity")
        if not {"summary", "description"} <= set(r.get("annotations", {})):
            errors.append(f"{r['alert']}: summary or description missing")
    bad = unknown(r["expr"] for r in rules)
    if bad:
        errors.append("unknown metrics in the rules: " + ", ".join(bad))
    return errors


def dashboard(objs, label, annotation):
    cm = one(objs, "ConfigMap")
    errors = []
    for pair, got in ((label, cm["metadata"].get("labels", {})),
                      (annotation, cm["metadata"].get("annotations", {}))):
        k, v = pair.split("=", 1)
        if got.get(k) != v:
            errors.append(f"{pair} missing: {got}")
    try:
        dash = json.loads(cm["data"]["minerpool.json"])
    except (KeyError, ValueError) as e:
        return errors + [f"minerpool.json does not parse: {e!r}"]
    if dash.get("schemaVersion") != 39:
        errors.append(f"schemaVersion {dash.get('schemaVersion')}")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    if variables.get("datasource", {}).get("type") != "datasource" or \
            variables["datasource"].get("query") != "prometheus":
        errors.append("no datasource variable of Prometheus data sources")
    if "label_values(minerpool_node_websocket_messages_total, namespace)" not in \
            json.dumps(variables.get("namespace", {}).get("query")):
        errors.append("no namespace variable from minerpool_node_websocket_messages_total")
    panels, stack = [], list(dash["panels"])
    while stack:
        p = stack.pop()
        stack.extend(p.get("panels", []))
        if p["type"] != "row":
            panels.append(p)
    exprs = []
    for p in panels:
        targets = p.get("targets", [])
        if not targets or not all(t.get("expr") for t in targets):
            errors.append(f"panel {p['title']!r} has a target without an expression")
        exprs += [t.get("expr", "") for t in targets]
    bad = unknown(exprs)
    if bad:
        errors.append("unknown metrics in the dashboard: " + ", ".join(bad))
    return errors


def kinds(objs, *forbidden):
    return [f"{o['kind']} {o['metadata']['name']} rendered" for o in objs if o["kind"] in forbidden]


def names(objs):
    for o in objs:
        print(o["kind"], o["metadata"]["name"])
    return []


check, args = sys.argv[1], sys.argv[2:]
objs = objects(sys.stdin.read())
errors = {"service-monitor": service_monitor, "prometheus-rule": prometheus_rule,
          "dashboard": dashboard, "none-of": kinds, "names": names}[check](objs, *args)
if errors:
    sys.exit("\n".join(errors))
EOF
# render_check CHECK [ARGS...] -- [helm args...]: renders with the helm args and runs the Python
# check on the objects.
render_check() {
    local what=()
    while [ "$1" != -- ]; do
        what+=("$1")
        shift
    done
    shift
    render "$@" | to_json | python3 "$mon/check.py" "${what[@]}"
}
# The objects rendered with the given values, one "Kind name" a line, sorted.
rendered_objects() { render "$@" | to_json | python3 "$mon/check.py" names | sort; }
# renders_one_more "Kind name" [helm args...]: the values add that object to the defaults and
# change nothing else in the list.
renders_one_more() {
    local want=$1 expected got
    shift
    expected=$({ rendered_objects; echo "$want"; } | sort)
    got=$(rendered_objects "$@")
    [ "$got" = "$expected" ] || {
        echo "expected objects vs rendered:"
        diff <(echo "$expected") <(echo "$got")
    }
}
# fails_with MESSAGE [helm args...]: the render fails and says MESSAGE.
fails_with() {
    local message=$1 out
    shift
    if out=$(render "$@" 2>&1); then
        echo "rendered, expected a failure"
        return 1
    fi
    grep -qF -- "$message" <<<"$out" || {
        echo "$out"
        return 1
    }
}
# rules_file FILE [helm args...]: the PrometheusRule's .spec, a Prometheus rules file, into FILE.
rules_file() {
    local file=$1
    shift
    render --show-only templates/prometheusrule.yaml --set prometheusRule.enabled=true "$@" |
        kubectl label --local -f - -o jsonpath='{.spec}' minerpool.io/chart-test-none- >"$file"
}
# check_rules [helm args...]: promtool checks the rendered rules; lint findings fail too.
check_rules() {
    rules_file "$mon/check-rules.yaml" "$@" &&
        "$promtool" check rules --lint-fatal "$mon/check-rules.yaml"
}
# The alerts' unit tests run on rules rendered with the chart's defaults, next to a copy of
# scripts/alerts-test.yaml (which names its rules file relative to itself).
alerts_unit_tests() {
    rules_file "$mon/minerpool-rules.yaml" &&
        cp "$ROOT/scripts/alerts-test.yaml" "$mon/alerts-test.yaml" &&
        "$promtool" test rules "$mon/alerts-test.yaml"
}

fullname=$release-minerpool-operator
sm=(--set metrics.serviceMonitor.enabled=true --set metrics.serviceMonitor.labels.release=prometheus)
pr=(--set prometheusRule.enabled=true --set prometheusRule.labels.release=prometheus)
gd=(--set grafanaDashboard.enabled=true --set-string grafanaDashboard.annotations.grafana_folder=Minerpool)
check "no ServiceMonitor, PrometheusRule or dashboard ConfigMap by default" \
    render_check none-of ServiceMonitor PrometheusRule ConfigMap --
check "helm lint --strict (monitoring on)" \
    "$HELM" lint --strict "$CHART" "${sm[@]}" "${pr[@]}" "${gd[@]}"
check "serviceMonitor.enabled renders a ServiceMonitor and nothing more" \
    renders_one_more "ServiceMonitor $fullname" "${sm[@]}"
check "ServiceMonitor selects the metrics Service and its port metrics" \
    render_check service-monitor "$ns" release=prometheus -- "${sm[@]}"
check "ServiceMonitor in another namespace still selects the release namespace" \
    render_check service-monitor "$ns" release=prometheus -- "${sm[@]}" \
    --set metrics.serviceMonitor.namespace=monitoring
check "serviceMonitor without the metrics Service fails to render" \
    fails_with "metrics.serviceMonitor.enabled needs metrics.service.enabled" \
    "${sm[@]}" --set metrics.service.enabled=false
check_denied "values schema rejects serviceMonitor.interval=soon" \
    "$HELM" template x "$CHART" --set metrics.serviceMonitor.interval=soon
check "prometheusRule.enabled renders a PrometheusRule and nothing more" \
    renders_one_more "PrometheusRule $fullname" "${pr[@]}"
check "PrometheusRule: labels, severities, annotations, known metrics" \
    render_check prometheus-rule release=prometheus -- "${pr[@]}"
check "grafanaDashboard.enabled renders a ConfigMap and nothing more" \
    renders_one_more "ConfigMap $fullname-dashboard" "${gd[@]}"
check "dashboard ConfigMap: label, folder, JSON, variables, known metrics" \
    render_check dashboard grafana_dashboard=1 grafana_folder=Minerpool -- "${gd[@]}"
check "dashboard ConfigMap with another sidecar label" \
    render_check dashboard dashboards=minerpool grafana_folder=Minerpool -- "${gd[@]}" \
    --set grafanaDashboard.label=dashboards --set grafanaDashboard.labelValue=minerpool

# Debian's prometheus package gives promtool; without it the rule checks fail, they are not skipped.
if promtool=$("$ROOT/scripts/debian-tool.sh" promtool prometheus 2>"$mon/promtool.log"); then
    version=$("$promtool" --version 2>&1 | awk 'NR == 1 { print $3 }')
    check "promtool $version check rules (defaults)" check_rules
    check "promtool $version check rules (watched namespaces, other thresholds)" \
        check_rules "${namespaced[@]}" --set prometheusRule.jobFailing.consecutiveFailures=5 \
        --set prometheusRule.rewardsScanStalled.window=1h --set prometheusRule.nodeDown.for=1m
    check "promtool $version test rules scripts/alerts-test.yaml" alerts_unit_tests
else
    printf 'FAIL  %s\n' "promtool unavailable: scripts/debian-tool.sh promtool prometheus failed"
    sed 's/^/      /' "$mon/promtool.log"
    failed=$((failed + 1))
fi

kubectl create namespace "$ns" >/dev/null
for n in "${watched[@]}"; do kubectl create namespace "$n" >/dev/null; done

check "CRD accepted (server dry run)" crd_dry_run
check "helm template | kubectl apply --dry-run=server (defaults)" server_dry_run
check "helm template | kubectl apply --dry-run=server (watched namespaces)" \
    server_dry_run "${namespaced[@]}"
check "helm template | kubectl apply --dry-run=server (dashboard ConfigMap)" \
    server_dry_run --show-only templates/grafana-dashboard.yaml "${gd[@]}"

pod='{.spec.template.spec'
ctr='{.spec.template.spec.containers[0]'
check "pod runs as non-root" field_is "$pod.securityContext.runAsNonRoot}" true
check "pod seccomp RuntimeDefault" field_is "$pod.securityContext.seccompProfile.type}" RuntimeDefault
check "container root filesystem read-only" \
    field_is "$ctr.securityContext.readOnlyRootFilesystem}" true
check "container drops ALL capabilities" field_is "$ctr.securityContext.capabilities.drop}" '["ALL"]'
check "container cannot escalate privileges" \
    field_is "$ctr.securityContext.allowPrivilegeEscalation}" false
check "container args are [run]" field_is "$ctr.args}" '["run"]'
check "liveness probe GET /healthz on metrics" \
    field_is "$ctr.livenessProbe.httpGet.path}:$ctr.livenessProbe.httpGet.port}" /healthz:metrics
check "readiness probe GET /readyz on metrics" \
    field_is "$ctr.readinessProbe.httpGet.path}:$ctr.readinessProbe.httpGet.port}" /readyz:metrics
check "metrics port 8080" field_is "$ctr.ports[?(@.name==\"metrics\")].containerPort}" 8080
check "leader election off with 1 replica" \
    field_is "$ctr.env[?(@.name==\"MINERPOOL_LEADER_ELECTION\")].value}" false

# Cluster-wide install.
check "helm install (cluster-wide)" "$HELM" install "$release" "$CHART" -n "$ns"
check "operator Deployment exists" kubectl -n "$ns" get deployment "$release-minerpool-operator"
check "metrics Service exists" kubectl -n "$ns" get service "$release-minerpool-operator-metrics"
check "ServiceAccount exists" kubectl -n "$ns" get serviceaccount "$release-minerpool-operator"
check "ClusterRole exists" kubectl get clusterrole "$release-minerpool-operator"

# The Prometheus Operator's ServiceMonitor kind, so that the matrix below asks about that
# resource and not an unknown name (always "no").
check "ServiceMonitor CRD served" sh -c "kubectl apply -f '$ROOT/operator/testdata/servicemonitor-crd.yaml' &&
    kubectl wait --for=condition=Established --timeout=30s crd/servicemonitors.monitoring.coreos.com"

# The can-i matrix: every verb the operator uses, and none it does not.
for allowed in \
    "get configmaps" "list configmaps" "watch configmaps" "create configmaps" "patch configmaps" \
    "get services" "list services" "watch services" "create services" "patch services" \
    "get deployments.apps" "list deployments.apps" "watch deployments.apps" \
    "create deployments.apps" "patch deployments.apps" \
    "get cronjobs.batch" "list cronjobs.batch" "watch cronjobs.batch" "create cronjobs.batch" \
    "patch cronjobs.batch" "delete cronjobs.batch" \
    "get servicemonitors.monitoring.coreos.com" "create servicemonitors.monitoring.coreos.com" \
    "patch servicemonitors.monitoring.coreos.com" "delete servicemonitors.monitoring.coreos.com" \
    "get poddisruptionbudgets.policy" "list poddisruptionbudgets.policy" \
    "watch poddisruptionbudgets.policy" "create poddisruptionbudgets.policy" \
    "patch poddisruptionbudgets.policy" "delete poddisruptionbudgets.policy" \
    "get networkpolicies.networking.k8s.io" "list networkpolicies.networking.k8s.io" \
    "watch networkpolicies.networking.k8s.io" "create networkpolicies.networking.k8s.io" \
    "patch networkpolicies.networking.k8s.io" "delete networkpolicies.networking.k8s.io" \
    "get secrets" "get pods" "list pods" "watch pods" \
    "create events.events.k8s.io" "patch events.events.k8s.io"; do
    # shellcheck disable=SC2086
    check "SA may $allowed" can $allowed -n default
done
for denied in \
    "list secrets" "watch secrets" "create secrets" "update secrets" "delete secrets" \
    "update configmaps" "delete configmaps" "update services" "delete services" \
    "update deployments.apps" "delete deployments.apps" "update cronjobs.batch" \
    "create pods" "patch pods" "delete pods" "create pods --subresource=exec" \
    "get pods --subresource=log" \
    "create jobs.batch" "delete jobs.batch" "create events" \
    "list servicemonitors.monitoring.coreos.com" "update servicemonitors.monitoring.coreos.com" \
    "update poddisruptionbudgets.policy" "update networkpolicies.networking.k8s.io" \
    "create pods --subresource=eviction" \
    "create roles.rbac.authorization.k8s.io" "create rolebindings.rbac.authorization.k8s.io"; do
    # shellcheck disable=SC2086
    check_denied "SA may not $denied" can $denied -n default
done
check_denied "SA may not touch leases with leader election off" \
    can get leases.coordination.k8s.io -n "$ns"

# The MinerPool permissions can only be asked about once the CRD is served.
if [ -f "$CRD" ]; then
    check "CRD installed and established" \
        kubectl wait --for=condition=Established --timeout=30s crd/minerpools.minerpool.io
    check "SA may watch minerpools" can watch minerpools.minerpool.io -A
    check "SA may patch minerpools/status" can patch minerpools.minerpool.io --subresource status -A
    check_denied "SA may not update minerpools/status" \
        can update minerpools.minerpool.io --subresource status -A
    check_denied "SA may not update minerpools (spec)" can update minerpools.minerpool.io -A
    check_denied "SA may not patch minerpools (spec)" can patch minerpools.minerpool.io -A
    check_denied "SA may not delete minerpools" can delete minerpools.minerpool.io -A
    check "examples/minerpool.yaml accepted (server dry run)" \
        kubectl -n "$ns" apply --dry-run=server -f "$ROOT/examples/minerpool.yaml"
else
    printf 'FAIL  %s missing: the chart must carry the CRD\n' "${CRD#"$ROOT"/}"
    failed=$((failed + 1))
fi
check "examples/mongodb-dev.yaml accepted (server dry run)" \
    kubectl -n "$ns" apply --dry-run=server -f "$ROOT/examples/mongodb-dev.yaml"

check "helm uninstall (cluster-wide)" "$HELM" uninstall "$release" -n "$ns" --wait
check_denied "ClusterRole gone after uninstall" kubectl get clusterrole "$release-minerpool-operator"
check_denied "Deployment gone after uninstall" \
    kubectl -n "$ns" get deployment "$release-minerpool-operator"

# Namespaced install with leader election (two replicas).
sa=system:serviceaccount:$ns:$release-ns-minerpool-operator
check "helm install (watched namespaces, 2 replicas)" \
    "$HELM" install "$release-ns" "$CHART" -n "$ns" "${namespaced[@]}"
check_denied "no ClusterRole when namespaces are listed" \
    kubectl get clusterrole "$release-ns-minerpool-operator"
check "SA may create deployments in ${watched[0]}" can create deployments.apps -n "${watched[0]}"
check_denied "SA may not create deployments in default" can create deployments.apps -n default
if [ -f "$CRD" ]; then
    check "SA may watch minerpools in ${watched[1]}" \
        can watch minerpools.minerpool.io -n "${watched[1]}"
    check_denied "SA may not watch minerpools cluster-wide" can watch minerpools.minerpool.io -A
fi
check_denied "SA may not read secrets in default" can get secrets -n default
check "SA may create a lease" can create leases.coordination.k8s.io -n "$ns"
check "SA may update its own lease" \
    can update "leases.coordination.k8s.io/$release-ns-minerpool-operator" -n "$ns"
check_denied "SA may not update another lease" \
    can update leases.coordination.k8s.io/other -n "$ns"
check "leader election on with 2 replicas" \
    field_is "$ctr.env[?(@.name==\"MINERPOOL_LEADER_ELECTION\")].value}" true "${namespaced[@]}"
check "helm uninstall (watched namespaces)" "$HELM" uninstall "$release-ns" -n "$ns" --wait
check_denied "Role gone after uninstall" \
    kubectl -n "${watched[0]}" get role "$release-ns-minerpool-operator"

echo "chart-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
