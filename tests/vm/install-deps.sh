#!/usr/bin/env bash
# Installs what the real-kernel (qemu) tier needs, and fetches (without installing) the
# guest kernel package into target/vm/kernel/. Idempotent: does nothing when all is there.
#
#   tests/vm/install-deps.sh            # host packages + guest kernel
#
# The guest kernel is Debian's newest linux-image-6.1.0-*-amd64: it has bonding.ko, tls.ko
# and veth.ko as plain modules. It is unpacked with dpkg-deb -x, never installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VM_DIR="${BONDNET_VM_DIR:-$ROOT/target/vm}"
KDIR="$VM_DIR/kernel"

HOST_PACKAGES=(qemu-system-x86 busybox-static containernetworking-plugins iproute2 jq xz-utils cpio gzip)

log() { echo "install-deps: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        log "not root and no sudo: cannot install packages"; exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive

updated=0
apt_update_once() {
    if [ "$updated" -eq 0 ]; then
        log "apt-get update"
        $SUDO apt-get update -qq
        updated=1
    fi
}

# (No `cmd | grep -q` under pipefail: grep's early exit kills cmd with SIGPIPE.)
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }
has_candidate() {
    local c
    c="$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p')"
    [ -n "$c" ] && [ "$c" != "(none)" ]
}

missing=()
for p in "${HOST_PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    # An empty or stale package list is the usual reason a candidate is missing.
    for p in "${missing[@]}"; do
        if ! has_candidate "$p"; then
            apt_update_once; break
        fi
    done
    log "apt-get install ${missing[*]}"
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the guest kernel -------------------------------------------------------------------
pick_kernel() {
    # Newest ABI number among linux-image-6.1.0-N-amd64 (the generic flavour, signed: it
    # ships the modules; the -unsigned twin has the same files).
    apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null \
        | awk '{print $1}' | sort -V | tail -n1
}

if [ -f "$KDIR/.done" ] && [ -n "$(cat "$KDIR/.done")" ]; then
    log "guest kernel already unpacked: $(cat "$KDIR/.done")"
    exit 0
fi

pkg="$(pick_kernel)"
if [ -z "$pkg" ]; then
    apt_update_once
    pkg="$(pick_kernel)"
fi
if [ -z "$pkg" ]; then
    log "no linux-image-6.1.0-*-amd64 package is known to apt"; exit 1
fi

mkdir -p "$KDIR/deb"
apt_download() {
    # apt drops to the _apt user for downloads when it can; as root into a root-owned dir it
    # cannot, and says so. Download as the invoking user instead, quietly.
    (cd "$KDIR/deb" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" "$1")
}
rm -rf "$KDIR/root"
deb="$(ls "$KDIR/deb/${pkg}_"*.deb 2>/dev/null | head -n1 || true)"
if [ -z "$deb" ]; then
    log "apt-get download $pkg"
    apt_download "$pkg"
    deb="$(ls "$KDIR/deb/${pkg}_"*.deb | head -n1)"
fi

# The signed package is expected to carry the modules; fall back to -unsigned otherwise.
if ! dpkg-deb -c "$deb" | grep -c '/bonding/bonding.ko' >/dev/null; then
    log "$pkg has no bonding.ko; trying ${pkg}-unsigned"
    if ! ls "$KDIR/deb/${pkg}-unsigned_"*.deb >/dev/null 2>&1; then
        apt_download "${pkg}-unsigned"
    fi
    deb="$(ls "$KDIR/deb/${pkg}-unsigned_"*.deb | head -n1)"
fi

log "unpacking $(basename "$deb")"
mkdir -p "$KDIR/root"
dpkg-deb -x "$deb" "$KDIR/root"
echo "$pkg" >"$KDIR/.done"
log "guest kernel ready: $pkg"
