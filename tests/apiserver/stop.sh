#!/usr/bin/env bash
# Stops what start.sh started in DIR: the API server only (`server`) or both it and etcd
# (`all`, the default). Each process gets SIGTERM, then SIGKILL after 10 s; only the pids that
# start.sh recorded are signalled.
set -euo pipefail

dir=${1:?usage: stop.sh DIR [all|server]}
what=${2:-all}

stop() {
    local f=$dir/$1.pid pid i
    [[ -f $f ]] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
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
*)
    echo "apiserver/stop.sh: unknown target $what (all|server)" >&2
    exit 1
    ;;
esac
