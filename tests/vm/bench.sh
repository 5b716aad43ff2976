#!/usr/bin/env bash
# The benchmark: the release bond binary against the upstream bond-cni plugin it replaces,
# side by side in one boot of the real-kernel guest: VERSION, and ADD, CHECK, DEL per IPAM
# (none, static, host-local), median and spread of both and the ratio; the kernel's own cost
# by ip -batch; and where bond's time goes, step by step, from its trace.
#   tests/vm/bench.sh [CYCLES]     (default 20 per row; the guest console streams to
#                                   stderr, the figures are printed on stdout at the end)
# The upstream plugin comes from tests/vm/upstream-bond.sh (see its env knobs); without it
# (BONDNET_BENCH_NO_UPSTREAM=1) only bond is measured. With BONDNET_BENCH_STARTS="BIN..."
# only the process start (VERSION) of those binaries and of a static no-op is measured.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "${BONDNET_BENCH_NO_UPSTREAM:-0}" != 1 ]; then
    up="$("$HERE/upstream-bond.sh")" || { echo "bench: no upstream bond-cni binary (see tests/vm/upstream-bond.sh, or set BONDNET_BENCH_NO_UPSTREAM=1)" >&2; exit 2; }
    export BONDNET_UPSTREAM_BIN="$up"
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$HERE/run.sh" --bench "${1:-20}" >"$log" 2> >(cat >&2) || { cat "$log" >&2; echo "bench: the guest run failed" >&2; exit 1; }
if grep -q '^BONDNET-FAIL' "$log" || ! grep -q '^BENCH \(bond\|starts\):' "$log"; then
    cat "$log" >&2
    echo "bench: no figures from the guest" >&2
    exit 1
fi
sed -n '/^BENCH \(bond\|starts\):/,/^BONDNET-DONE/p' "$log" | grep -v '^BONDNET-DONE'
