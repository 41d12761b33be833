#!/usr/bin/env bash
# A MongoDB-compatible server for tests: SecantusDB (a MongoDB wire-protocol server on PyPI,
# presenting a one-node replica set). It stands in for mongod, which no reachable registry ships;
# the code keeps to the documented MongoDB API.
#
#   mongo-test-server.sh install            install once into ~/.cache (idempotent)
#   mongo-test-server.sh start DIR [--standalone]
#                                           start on a free loopback port; writes DIR/uri, DIR/pid
#
# MINERPOOL_MONGO_HOST=ADDRESS listens on that address instead of 127.0.0.1 (the test cluster's
# bridge, for pods); its URI connects directly, since the replica set names itself by loopback.
#   mongo-test-server.sh stop DIR           stop it by PID
set -euo pipefail
# shellcheck source=pypi-venv.sh
. "$(dirname "$0")/pypi-venv.sh"

VERSION=0.7.0b3
CACHE=${MINERPOOL_CACHE:-$HOME/.cache/minerpool}
VENV=$CACHE/secantusdb-$VERSION

install() {
    pypi_venv_install "$VENV" --pre "secantusdb==$VERSION"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1 mode=${2:-}
    install
    mkdir -p "$dir"
    local port flags=() query="replicaSet=secantus" host=${MINERPOOL_MONGO_HOST:-127.0.0.1}
    port=$(free_port)
    [ "$host" = 127.0.0.1 ] || query="directConnection=true"
    if [ "$mode" = "--standalone" ]; then
        flags=(--standalone)
        query="directConnection=true"
    fi
    "$VENV/bin/secantusd-py" --host "$host" --port "$port" --storage-path :memory: \
        --log-level WARNING "${flags[@]}" >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    local uri="mongodb://$host:$port/?$query"
    for _ in $(seq 1 150); do
        if "$VENV/bin/python" - "$host" "$port" <<'PY' 2>/dev/null; then
import sys, pymongo
client = pymongo.MongoClient(sys.argv[1], int(sys.argv[2]), directConnection=True, serverSelectionTimeoutMS=200)
client.admin.command("ping")
PY
            echo "$uri" >"$dir/uri"
            [ "$mode" = "--standalone" ] || start_reaper "$dir" "$host" "$port"
            echo "$uri"
            return 0
        fi
        if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
            echo "MongoDB-compatible server exited during start-up:" >&2
            tail -20 "$dir/server.log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "MongoDB-compatible server did not answer on port $port within 30 s:" >&2
    tail -20 "$dir/server.log" >&2
    stop "$dir"
    return 1
}

# mongod aborts a transaction that outlives transactionLifetimeLimitSeconds (60 s) from a
# periodic sweeper. SecantusDB reaps such transactions only when a transaction command reaches it,
# so a transaction left open by a crashed process would hold its documents for ever on an
# otherwise quiet server (a write waiting on them waits with it). A tiny transaction every 2 s
# gives it mongod's sweep.
start_reaper() {
    local dir=$1 host=$2 port=$3
    "$VENV/bin/python" - "$host" "$port" >"$dir/reaper.log" 2>&1 <<'PY' &
import sys, time, pymongo
client = pymongo.MongoClient(sys.argv[1], int(sys.argv[2]), directConnection=True,
                             serverSelectionTimeoutMS=2000)
while True:
    try:
        with client.start_session() as session:
            session.start_transaction()
            client["secantus_sweep"]["sweep"].find_one({}, session=session)
            session.abort_transaction()
    except pymongo.errors.ServerSelectionTimeoutError:
        sys.exit(0)
    except pymongo.errors.PyMongoError:
        pass
    time.sleep(2)
PY
    echo $! >"$dir/reaper.pid"
}

stop() {
    local dir=$1 pid
    if [ -f "$dir/reaper.pid" ]; then
        kill -TERM "$(cat "$dir/reaper.pid")" 2>/dev/null || true
        rm -f "$dir/reaper.pid"
    fi
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/pid"
}

case "${1:-}" in
    install) install ;;
    start) start "${2:?start needs a directory}" "${3:-}" ;;
    stop) stop "${2:?stop needs a directory}" ;;
    *) echo "usage: $0 install | start DIR [--standalone] | stop DIR" >&2; exit 2 ;;
esac
