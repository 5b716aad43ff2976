#!/usr/bin/env bash
# The benchmark: ADD+DEL cycles of the release bond binary on the real kernel, with a
# breakdown (process start, IPAM delegation, the plugin's netlink work, a kernel floor).
#   tests/vm/bench.sh [CYCLES]     (default 200; the guest console streams to stderr,
#                                   the figures are printed on stdout at the end)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"$HERE/run.sh" --bench "${1:-200}" >"$log" 2> >(cat >&2) || { cat "$log" >&2; echo "bench: the guest run failed" >&2; exit 1; }
if grep -q '^BONDNET-FAIL' "$log" || ! grep -q '^BENCH bond:' "$log"; then
    cat "$log" >&2
    echo "bench: no figures from the guest" >&2
    exit 1
fi
sed -n '/^BENCH bond:/,/^BONDNET-DONE/p' "$log" | grep -v '^BONDNET-DONE'
