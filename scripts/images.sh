#!/usr/bin/env bash
# Builds the node, jobs and operator images without any registry (`make images`).
#
#   scripts/images.sh [TAG]      (default: dev) -> minerpool/minerpool-{node,jobs,operator}:TAG
#
# The binaries are compiled here (cargo build --release). Their runtime base is assembled from
# this machine: exactly the shared libraries the binaries link (ldd), the dynamic loader, the CA
# bundle, and passwd/group entries for the `nonroot` user (65532) that the distroless base has.
# Each image is then built from the workspace's Dockerfile (CRATE, BINARY), the same runtime stage
# as with a registry, with RUNTIME_IMAGE and BINARIES_FROM pointing at those two local images.
#
# Uses the daemon at DOCKER_HOST when set, else starts a private one for the build
# (scripts/dockerd.sh); the images stay in its data root for the test cluster.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TAG=${1:-${IMAGE_TAG:-dev}}
CARGO=${CARGO:-cargo}
DOCKER=/usr/bin/docker
BINARIES="minerpool-node minerpool-job minerpool-operator"

log() { printf 'images: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

work=$(mktemp -d)
own_daemon=
cleanup() {
    if [ -n "$own_daemon" ]; then "$ROOT/scripts/dockerd.sh" stop "$work/docker" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$ROOT/scripts/dockerd.sh" install
if [ -z "${DOCKER_HOST:-}" ]; then
    DOCKER_HOST=$("$ROOT/scripts/dockerd.sh" start "$work/docker")
    own_daemon=1
fi
export DOCKER_HOST

log "cargo build --release"
(cd "$ROOT" && $CARGO build --locked --release -p minerpool-node -p minerpool-jobs \
    -p minerpool-operator >&2)
target=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$work/binaries/out"
for bin in $BINARIES; do
    install -m 0755 "$target/release/$bin" "$work/binaries/out/$bin"
done

# The runtime base: what the binaries load, and the files the distroless base provides.
base=$work/base
mkdir -p "$base/etc/ssl/certs" "$base/tmp" "$base/home/nonroot" "$base/usr/local/bin"
chmod 1777 "$base/tmp"
for bin in $BINARIES; do
    ldd "$work/binaries/out/$bin" | awk '/=>/ { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u | while read -r lib; do
    [ -n "$lib" ] || continue
    mkdir -p "$base$(dirname "$lib")"
    cp -L "$lib" "$base$lib"
done
[ -n "$(find "$base" -name 'ld-linux*' -print -quit)" ] || die "no dynamic loader found by ldd"
cp -L /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/ca-certificates.crt"
cat >"$base/etc/passwd" <<'P'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
P
cat >"$base/etc/group" <<'G'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
G
printf 'hosts: files dns\n' >"$base/etc/nsswitch.conf"

# Content-addressed tags: an unchanged base or binary set is not imported twice.
import_dir() {
    local dir=$1 name=$2 hash
    hash=$(cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum |
        cut -c1-16)
    if ! "$DOCKER" image inspect "$name:$hash" >/dev/null 2>&1; then
        tar -C "$dir" --numeric-owner --owner=0 --group=0 -c . |
            "$DOCKER" import - "$name:$hash" >/dev/null
        log "imported $name:$hash"
    fi
    echo "$name:$hash"
}
runtime_image=$(import_dir "$base" minerpool/runtime-base)
binaries_image=$(import_dir "$work/binaries" minerpool/binaries)

mkdir -p "$work/context"
for crate in node jobs operator; do
    case $crate in
    node) image=minerpool/minerpool-node binary=minerpool-node ;;
    jobs) image=minerpool/minerpool-jobs binary=minerpool-job ;;
    operator) image=minerpool/minerpool-operator binary=minerpool-operator ;;
    esac
    # The context is empty: the runtime stage copies only from BINARIES_FROM.
    DOCKER_BUILDKIT=1 "$DOCKER" build --quiet -f "$ROOT/Dockerfile" \
        --build-arg "CRATE=minerpool-$crate" --build-arg "BINARY=$binary" \
        --build-arg "RUNTIME_IMAGE=$runtime_image" --build-arg "BINARIES_FROM=$binaries_image" \
        -t "$image:$TAG" "$work/context" >/dev/null ||
        die "docker build of $image failed"
    log "built $image:$TAG"
done
"$DOCKER" image ls --filter "reference=minerpool/minerpool-*:$TAG" \
    --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'
