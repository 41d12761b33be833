#!/usr/bin/env bash
# Runs a command with the test servers up, and stops them however the command ends.
#   with-test-servers.sh CMD [ARGS...]
# Exports MINERPOOL_TEST_MONGODB_URI (a MongoDB-compatible server presenting a one-node replica
# set) and MINERPOOL_TEST_MONGODB_STANDALONE_URI (the same server kind as a standalone),
# MINERPOOL_TEST_VALIDATOR_PYTHON (the Python that runs the README's signed-validator example),
# MINERPOOL_TEST_SCHEMATHESIS (the API fuzzer run against the node's OpenAPI document), and, when MINERPOOL_TEST_KUBE=1, the kube-apiserver environment of scripts/kube-test-env.sh (and
# its directory as MINERPOOL_TEST_KUBE_DIR).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/minerpool-test.XXXXXX")

cleanup() {
    "$here/mongo-test-server.sh" stop "$run_dir/mongo" || true
    "$here/mongo-test-server.sh" stop "$run_dir/mongo-standalone" || true
    if [ -x "$here/kube-test-env.sh" ] && [ -d "$run_dir/kube" ]; then
        "$here/kube-test-env.sh" stop "$run_dir/kube" || true
    fi
    rm -rf "$run_dir"
}
trap cleanup EXIT INT TERM

MINERPOOL_TEST_MONGODB_URI=$("$here/mongo-test-server.sh" start "$run_dir/mongo")
MINERPOOL_TEST_MONGODB_STANDALONE_URI=$("$here/mongo-test-server.sh" start "$run_dir/mongo-standalone" --standalone)
export MINERPOOL_TEST_MONGODB_URI MINERPOOL_TEST_MONGODB_STANDALONE_URI
echo "test MongoDB-compatible server: $MINERPOOL_TEST_MONGODB_URI" >&2

"$here/python-validator.sh" install
MINERPOOL_TEST_VALIDATOR_PYTHON=$("$here/python-validator.sh" python)
export MINERPOOL_TEST_VALIDATOR_PYTHON

"$here/schemathesis.sh" install
MINERPOOL_TEST_SCHEMATHESIS=$("$here/schemathesis.sh" path)
export MINERPOOL_TEST_SCHEMATHESIS

if [ "${MINERPOOL_TEST_KUBE:-0}" = 1 ]; then
    "$here/kube-test-env.sh" install
    "$here/kube-test-env.sh" start "$run_dir/kube"
    export MINERPOOL_TEST_KUBE_DIR=$run_dir/kube
    set -a
    # shellcheck disable=SC1091
    . "$run_dir/kube/env"
    set +a
fi

"$@"
