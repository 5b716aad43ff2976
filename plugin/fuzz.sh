#!/usr/bin/env bash
# The bounded fuzz run of the bond plugin's inputs (stdin config and CNI_* variables; the
# harness and its rules are in plugin/src/fuzz.rs, the corpus in plugin/fuzz/corpus/): rounds
# of 256 cases until SECONDS (default 60) are spent, then one line with how many cases and
# plugin calls ran and one with the answers by command. Stable Rust; exits non-zero with the
# shrunk failing input when a rule breaks.
#
#   plugin/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BONDNET_FUZZ_SECONDS="${1:-60}" exec cargo test -p bondnet-plugin --lib \
    fuzz::fuzz_the_plugin_inputs -- --exact --nocapture
