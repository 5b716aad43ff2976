#!/usr/bin/env bash
# Stops what start.sh started in DIR: the API server only (`server`) or both it and etcd
# (`all`, the default). Each process gets SIGTERM, then SIGKILL after 10 s; only the pids that
# start.sh recorded are signalled. `server-crash` kills the API server with SIGKILL at once.
set -euo pipefail

dir=${1:?usage: stop.sh DIR [all|server|server-crash]}
what=${2:-all}

stop() {
    local f=$dir/$1.pid pid i signal=${2:-TERM}
    [[ -f $f ]] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill "-$signal" "$pid" 2>/dev/null || true
        for i in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

case $what in
all)
    stop apiserver
    stop etcd
    ;;
server) stop apiserver ;;
server-crash) stop apiserver KILL ;;
*)
    echo "apiserver/stop.sh: unknown target $what (all|server|server-crash)" >&2
    exit 1
    ;;
esac
