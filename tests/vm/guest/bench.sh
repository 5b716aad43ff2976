#!/bin/sh
# In the guest: runs bond-bench (shipped in the overlay) with the arguments given to
# tests/vm/run.sh --bench, e.g. a cycle count, against the upstream plugin when run.sh
# shipped one (BONDNET_UPSTREAM_BIN) as /opt/cni/bin/bond-upstream.
n=${1:-20}
case "$n" in *[!0-9]*|"") echo "BONDNET-FAIL: bench: cycle count '$n' is not a number"; exit 0 ;; esac
# Builds to compare by process start only (run.sh ships BONDNET_BENCH_STARTS here).
if [ -d /opt/starts ]; then
    # shellcheck disable=SC2046
    /usr/bin/bond-bench --cycles "$n" --starts /opt/starts/* $([ -x /opt/cni/bin/bond-upstream ] && echo /opt/cni/bin/bond-upstream) || echo "BONDNET-FAIL: bench: bond-bench --starts failed"
    exit 0
fi
up=""
if [ -x /opt/cni/bin/bond-upstream ]; then
    for m in xfrm_algo xfrm_user nfnetlink; do
        insmod /lib/modules/bench/$m.ko || { echo "BONDNET-FAIL: bench: insmod $m.ko failed"; exit 0; }
    done
    up="--upstream /opt/cni/bin/bond-upstream"
fi
# shellcheck disable=SC2086
if ! /usr/bin/bond-bench --cycles "$n" $up; then
    echo "BONDNET-FAIL: bench: bond-bench failed"
fi
