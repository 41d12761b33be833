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

kubectl create namespace "$ns" >/dev/null
for n in "${watched[@]}"; do kubectl create namespace "$n" >/dev/null; done

check "CRD accepted (server dry run)" crd_dry_run
check "helm template | kubectl apply --dry-run=server (defaults)" server_dry_run
check "helm template | kubectl apply --dry-run=server (watched namespaces)" \
    server_dry_run "${namespaced[@]}"

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

# The can-i matrix: every verb the operator uses, and none it does not.
for allowed in \
    "get configmaps" "list configmaps" "watch configmaps" "create configmaps" "patch configmaps" \
    "get services" "list services" "watch services" "create services" "patch services" \
    "get deployments.apps" "list deployments.apps" "watch deployments.apps" \
    "create deployments.apps" "patch deployments.apps" \
    "get cronjobs.batch" "list cronjobs.batch" "watch cronjobs.batch" "create cronjobs.batch" \
    "patch cronjobs.batch" "delete cronjobs.batch" \
    "get secrets" "create events.events.k8s.io" "patch events.events.k8s.io"; do
    # shellcheck disable=SC2086
    check "SA may $allowed" can $allowed -n default
done
for denied in \
    "list secrets" "watch secrets" "create secrets" "update secrets" "delete secrets" \
    "update configmaps" "delete configmaps" "update services" "delete services" \
    "update deployments.apps" "delete deployments.apps" "update cronjobs.batch" \
    "create pods" "get pods" "create jobs.batch" "delete jobs.batch" "create events" \
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
