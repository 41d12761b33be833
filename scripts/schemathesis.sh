#!/usr/bin/env bash
# schemathesis, from PyPI in its own venv, for the test that fuzzes the node's API from its
# OpenAPI document (node/tests/api_contract.rs).
#
#   schemathesis.sh install    install once into ~/.cache (idempotent)
#   schemathesis.sh path       print the path of its `schemathesis` command (after install)
set -euo pipefail
# shellcheck source=pypi-venv.sh
. "$(dirname "$0")/pypi-venv.sh"

VERSION=4.32.5
CACHE=${MINERPOOL_CACHE:-$HOME/.cache/minerpool}
VENV=$CACHE/schemathesis-$VERSION

install() {
    pypi_venv_install "$VENV" "schemathesis==$VERSION"
}

case "${1:-}" in
    install) install ;;
    path)
        [ -f "$VENV/.installed" ] || { echo "not installed: run $0 install" >&2; exit 1; }
        echo "$VENV/bin/schemathesis"
        ;;
    *) echo "usage: $0 install | path" >&2; exit 2 ;;
esac
