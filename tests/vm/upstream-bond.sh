#!/usr/bin/env bash
# Builds the upstream bond-cni plugin (the Go plugin `bond` replaces) from its Go module by
# name and version, for the side-by-side benchmark, and prints the binary's path. Cached by
# version under ~/.cache/bondnet/upstream-bond-cni/VERSION/bond; never copied into the
# repository.
#
#   tests/vm/upstream-bond.sh            # prints the path of the cached or new binary
#
# Env:
#   BONDNET_UPSTREAM_BOND     a bond-cni binary built elsewhere: used as it is
#   BONDNET_UPSTREAM_VERSION  the module version (default below)
#   BONDNET_UPSTREAM_SRC      a local checkout of the module's source, built when the module
#                             proxy cannot serve the module (cached as src-<its commit>)
#
# The module path is the one bond-cni's go.mod declares, github.com/intel/bond-cni (the
# repository moved, the module path did not). Go is looked for on PATH, then /usr/local/go.
set -euo pipefail

MODULE=github.com/intel/bond-cni
VERSION="${BONDNET_UPSTREAM_VERSION:-v0.0.0-20260127133639-258926ad54a7}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/bondnet/upstream-bond-cni"

log() { echo "upstream-bond: $*" >&2; }

if [ -n "${BONDNET_UPSTREAM_BOND:-}" ]; then
    [ -x "$BONDNET_UPSTREAM_BOND" ] || { log "BONDNET_UPSTREAM_BOND=$BONDNET_UPSTREAM_BOND is not an executable"; exit 1; }
    echo "$BONDNET_UPSTREAM_BOND"; exit 0
fi

GO="$(command -v go || true)"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
if [ ! -x "$GO" ]; then
    log "no go command (PATH or /usr/local/go): cannot build the upstream plugin"; exit 1
fi

out="$CACHE/$VERSION/bond"
if [ -x "$out" ]; then echo "$out"; exit 0; fi
# A pseudo-version ends in its commit: a build of that commit's source is the same plugin.
from_src="$CACHE/src-${VERSION##*-}/bond"
if [ -x "$from_src" ]; then echo "$from_src"; exit 0; fi

mkdir -p "$CACHE/$VERSION"
log "go install $MODULE/bond@$VERSION"
tmpbin="$(mktemp -d)"
trap 'rm -rf "$tmpbin"' EXIT
if GOFLAGS=-mod=mod GOBIN="$tmpbin" "$GO" install "$MODULE/bond@$VERSION" >&2 2>"$tmpbin/err"; then
    install -m 0755 "$tmpbin/bond" "$out"
    echo "$out"; exit 0
fi
cat "$tmpbin/err" >&2
log "the module proxy did not serve $MODULE@$VERSION"

if [ -n "${BONDNET_UPSTREAM_SRC:-}" ]; then
    src="$BONDNET_UPSTREAM_SRC"
    grep -q "^module $MODULE\$" "$src/go.mod" 2>/dev/null \
        || { log "BONDNET_UPSTREAM_SRC=$src has no go.mod declaring $MODULE"; exit 1; }
    rev="$(git -C "$src" rev-parse --short=12 HEAD 2>/dev/null || echo local)"
    out="$CACHE/src-$rev/bond"
    if [ ! -x "$out" ]; then
        mkdir -p "$CACHE/src-$rev"
        log "go build ./bond in $src (commit $rev; its dependencies come from the module proxy)"
        (cd "$src" && "$GO" build -o "$out" ./bond) >&2
    fi
    echo "$out"; exit 0
fi
log "set BONDNET_UPSTREAM_SRC to a checkout of bond-cni, or BONDNET_UPSTREAM_BOND to a binary"
exit 1
