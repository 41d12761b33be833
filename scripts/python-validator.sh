#!/usr/bin/env bash
# The Python of the README's signed-validator example, with its two packages from PyPI, for the
# test that runs that example as written.
#
#   python-validator.sh install    install once into ~/.cache (idempotent)
#   python-validator.sh python     print the path of its python (after install)
set -euo pipefail
# shellcheck source=pypi-venv.sh
. "$(dirname "$0")/pypi-venv.sh"

FASTECDSA=4.0.0
WEBSOCKETS=17.4
CACHE=${MINERPOOL_CACHE:-$HOME/.cache/minerpool}
VENV=$CACHE/python-validator-fastecdsa-$FASTECDSA-websockets-$WEBSOCKETS

install() {
    # Wheels only: fastecdsa from source would need a C compiler and GMP headers.
    pypi_venv_install "$VENV" --only-binary :all: "fastecdsa==$FASTECDSA" "websockets==$WEBSOCKETS"
}

case "${1:-}" in
    install) install ;;
    python)
        [ -f "$VENV/.installed" ] || { echo "not installed: run $0 install" >&2; exit 1; }
        echo "$VENV/bin/python"
        ;;
    *) echo "usage: $0 install | python" >&2; exit 2 ;;
esac
