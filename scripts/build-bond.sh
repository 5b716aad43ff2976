#!/usr/bin/env bash
# Builds the `bond` CNI plugin as it ships (the Dockerfile runs this too): a static musl
# binary with no dynamic loader, and prints its path on stdout.
#
#   scripts/build-bond.sh            # target/<arch>-unknown-linux-musl/release/bond
#
# Why static: a CNI plugin is a new process for every call, and most of a dynamically linked
# binary's start is the loader mapping and relocating libc. Under qemu TCG (the VM tier and
# its benchmark) that was 74 ms of a 91 ms ADD; the same code linked statically starts in
# 12 ms, against 10 ms for a static busybox that does nothing (tests/vm/bench.sh prints both).
#
# Why non-PIE (relocation-model=static): static-pie links from this toolchain (rustc 1.95,
# its default linker, Debian 12) crash before main, on musl and on glibc alike; a static
# non-PIE binary runs everywhere. The stack, heap and mappings are still randomized.
#
# When the musl target is not installed and rustup cannot add it, the same static non-PIE
# binary is built against glibc's static libc (libc6-dev) instead, and that is said on stderr.
#
# Env: CARGO_TARGET_DIR (default <repo>/target), CARGO (default cargo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CARGO="${CARGO:-cargo}"
log() { echo "build-bond: $*" >&2; }

arch="$(uname -m)"
host="$(rustc -vV | sed -n 's/^host: //p')"
target="$arch-unknown-linux-musl"
flags="-C relocation-model=static"
if [ "$host" != "$target" ] && ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    log "the $target target is not installed: rustup target add $target"
    if ! rustup target add "$target" >&2; then
        target="$arch-unknown-linux-gnu"
        flags="$flags -C target-feature=+crt-static"
        log "cannot add it: building a static glibc binary for $target instead"
    fi
fi
# RUSTFLAGS with --target reach only the target's artifacts, never build scripts or
# proc-macros (which must stay dynamic).
log "cargo build --release --target $target -p bondnet-plugin --bin bond (RUSTFLAGS $flags)"
(cd "$ROOT" && RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$flags" "$CARGO" build --release --locked \
    --target "$target" -p bondnet-plugin --bin bond) >&2
bin="$TARGET_DIR/$target/release/bond"
# A binary that asks for a dynamic loader is not what ships.
if readelf -l "$bin" | grep -q "Requesting program interpreter"; then
    log "$bin is not static (it names a program interpreter)"
    exit 1
fi
echo "$bin"
