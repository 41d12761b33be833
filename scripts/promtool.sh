#!/usr/bin/env bash
# Prints the path of a promtool, installing Debian's prometheus package when there is none.
#
#   scripts/promtool.sh
#
# Used by scripts/chart-test.sh to check the chart's PrometheusRule and run its unit tests
# (scripts/alerts-test.yaml).
set -euo pipefail

die() {
    printf 'promtool: error: %s\n' "$*" >&2
    exit 1
}
root=()
[ "$(id -u)" -eq 0 ] || root=(sudo)

if path=$(command -v promtool); then
    echo "$path"
    exit 0
fi
apt-cache show prometheus >/dev/null 2>&1 || "${root[@]}" apt-get update >&2
printf 'promtool: apt-get install prometheus\n' >&2
# Where systemd runs, the package also starts a Prometheus server; only promtool is used here.
"${root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    prometheus >&2 || die "apt-get install prometheus failed"
path=$(command -v promtool) || die "the prometheus package installed no promtool"
echo "$path"
