# Sourced by the scripts that install a tool from PyPI into its own venv under ~/.cache.
#   pypi_venv_install VENV PIP_ARGS...   create VENV and pip install PIP_ARGS, once (idempotent)

pypi_venv_install() {
    local venv=$1
    shift
    # The marker is written last, so an interrupted install is redone rather than trusted.
    if [ -f "$venv/.installed" ]; then
        return 0
    fi
    mkdir -p "$(dirname "$venv")"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
    touch "$venv/.installed"
}
