#!/usr/bin/env bash
# The benchmark: ADD+DEL cycles of the release bond binary on the real kernel, with a
# breakdown (process start, IPAM delegation, the plugin's netlink work).
#   tests/vm/bench.sh [CYCLES]     (default 200)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$("$HERE/run.sh" --bench "${1:-200}" | tee /dev/stderr | grep -v -e '^BONDNET-' -e '^Booting' || true)"
grep -q '^BENCH bond:' <<<"$out" || { echo "bench: no figures from the guest" >&2; exit 1; }
! grep -q '^BENCH-FAIL' <<<"$out" || exit 1
