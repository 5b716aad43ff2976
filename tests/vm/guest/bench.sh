#!/bin/sh
# In the guest: runs bond-bench (shipped in the overlay) with the arguments given to
# tests/vm/run.sh --bench, e.g. a cycle count.
n=${1:-200}
case "$n" in *[!0-9]*|"") echo "BONDNET-FAIL: bench: cycle count '$n' is not a number"; exit 0 ;; esac
if ! /usr/bin/bond-bench --cycles "$n"; then
    echo "BONDNET-FAIL: bench: bond-bench failed"
fi
