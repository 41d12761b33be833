#!/usr/bin/env bash
# Prints the path of COMMAND, installing the Debian PACKAGES that provide it when it is missing.
#
#   scripts/debian-tool.sh COMMAND PACKAGE...
#
# Used for promtool (`prometheus`: the chart test checks the alert rules with it) and for
# chromedriver (`chromium chromium-driver`: the dashboard's browser test).
set -euo pipefail

die() {
    printf 'debian-tool: error: %s\n' "$*" >&2
    exit 1
}
[ $# -ge 2 ] || die "usage: debian-tool.sh COMMAND PACKAGE..."
command=$1
shift
root=()
[ "$(id -u)" -eq 0 ] || root=(sudo)

missing=()
for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$package")
done
if path=$(command -v "$command") && [ ${#missing[@]} -eq 0 ]; then
    echo "$path"
    exit 0
fi
apt-cache show "${missing[@]}" >/dev/null 2>&1 || "${root[@]}" apt-get update >&2
printf 'debian-tool: apt-get install %s\n' "${missing[*]}" >&2
# Where systemd runs, a package may also start its service; only the command is used here.
"${root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
path=$(command -v "$command") || die "$* installed no $command"
echo "$path"
