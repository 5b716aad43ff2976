#!/usr/bin/env bash
# Stops what start.sh started in DIR. Each process gets SIGTERM, then SIGKILL after 10 s; only
# the pids start.sh recorded are signalled. `apiserver-crash` kills the API server with SIGKILL
# at once.
#
#   tests/controlplane/stop.sh DIR [all|apiserver|apiserver-crash|controller-manager|scheduler|etcd]
set -euo pipefail

dir=${1:?usage: stop.sh DIR [all|apiserver|apiserver-crash|controller-manager|scheduler|etcd]}
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
    stop scheduler
    stop controller-manager
    stop apiserver
    stop etcd
    ;;
apiserver) stop apiserver ;;
apiserver-crash) stop apiserver KILL ;;
controller-manager) stop controller-manager ;;
scheduler) stop scheduler ;;
etcd) stop etcd ;;
*)
    echo "controlplane/stop.sh: unknown target $what" >&2
    exit 1
    ;;
esac
