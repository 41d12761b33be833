#!/usr/bin/env bash
# The Python of the README's signed-validator example, with its two packages from PyPI, for the
# test that runs that example as written.
#
#   python-validator.sh install    install once into ~/.cache (idempotent)
#   python-validator.sh python     print the path of its python (after install)
set -euo pipefail

FASTECDSA=4.0.0
WEBSOCKETS=17.4
CACHE=${MINERPOOL_CACHE:-$HOME/.cache/minerpool}
VENV=$CACHE/python-validator-fastecdsa-$FASTECDSA-websockets-$WEBSOCKETS

install() {
    # The marker is written last, so an interrupted install is redone rather than trusted.
    if [ -f "$VENV/.installed" ]; then
        return 0
    fi
    mkdir -p "$CACHE"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    # Wheels only: fastecdsa from source would need a C compiler and GMP headers.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --only-binary :all: \
        "fastecdsa==$FASTECDSA" "websockets==$WEBSOCKETS"
    touch "$VENV/.installed"
}

case "${1:-}" in
    install) install ;;
    python)
        [ -f "$VENV/.installed" ] || { echo "not installed: run $0 install" >&2; exit 1; }
        echo "$VENV/bin/python"
        ;;
    *) echo "usage: $0 install | python" >&2; exit 2 ;;
esac
