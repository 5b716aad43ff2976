#!/usr/bin/env bash
# Installs what the real-kernel (qemu) tier needs, and fetches (without installing) the
# guest kernel package into target/vm/kernel/. Idempotent: does nothing when all is there.
#
#   tests/vm/install-deps.sh            # host packages + guest kernel
#   tests/vm/install-deps.sh --igb      # also a qemu with igb (SR-IOV), for run.sh --sriov
#
# The guest kernel is Debian's newest linux-image-6.1.0-*-amd64: it has bonding.ko, tls.ko
# and veth.ko as plain modules. It is unpacked with dpkg-deb -x, never installed.
#
# --igb: bookworm's qemu (7.2) has no igb device (the Intel 82576, whose emulation has
# SR-IOV); bookworm-backports' (10.0) has. Its qemu-system-x86, qemu-system-data and seabios
# packages are downloaded and unpacked under target/vm/qemu-igb/ (never installed, so the
# default tier keeps the host's qemu); when apt knows no backports suite, one is added
# (/etc/apt/sources.list.d/bondnet-backports.sources) on the mirror the machine's own Debian
# source names. Prints nothing; run.sh --sriov finds the binary at
# target/vm/qemu-igb/root/usr/bin/qemu-system-x86_64.
set -euo pipefail

igb=0
case "${1:-}" in
    --igb) igb=1 ;;
    "") ;;
    *) echo "install-deps: unknown option $1" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VM_DIR="${BONDNET_VM_DIR:-$ROOT/target/vm}"
KDIR="$VM_DIR/kernel"

# iptables, e2fsprogs (mke2fs -d), kmod (depmod) and file: the SR-IOV node (run.sh --node, tests/node/images.sh).
HOST_PACKAGES=(qemu-system-x86 busybox-static containernetworking-plugins iproute2 jq xz-utils cpio gzip iptables e2fsprogs file kmod)

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

# --- qemu with igb (--igb) -------------------------------------------------------------
QDIR="$VM_DIR/qemu-igb"
QEMU_IGB_PACKAGES=(qemu-system-x86 qemu-system-data seabios)

# The URI of the configured Debian source that serves the release's main suite (deb822 or
# one-line format).
debian_uri() {
    local codename=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v c="$codename" '
            /^[[:space:]]*$/ { if (ok && uri) { print uri; exit } ok = 0; uri = ""; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == c) ok = 1 }
            END { if (ok && uri) print uri }' "$f" | head -n1
    done
    { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
        awk -v c="$codename" '$1 == "deb" && $3 == c { print $2; exit }'
}

fetch_qemu_igb() {
    local codename bpo stamp want uri p deb
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [ -n "$codename" ] || { log "--igb: /etc/os-release names no VERSION_CODENAME"; exit 1; }
    bpo="$codename-backports"
    want="$(apt-cache policy qemu-system-x86 2>/dev/null | awk '/^ +[0-9]/ && /~bpo/ { v = $1 } END { print v }')"
    if [ -z "$want" ]; then
        if ! apt-cache policy 2>/dev/null | grep -c " $bpo/main" >/dev/null; then
            uri="$(debian_uri "$codename" | head -n1 || true)"
            [ -n "$uri" ] || { log "--igb: no Debian source for $codename to add $bpo beside"; exit 1; }
            log "adding the $bpo suite of the machine's Debian mirror"
            printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                "$uri" "$bpo" | $SUDO tee /etc/apt/sources.list.d/bondnet-backports.sources >/dev/null
        fi
        updated=0
        apt_update_once
        want="$(apt-cache policy qemu-system-x86 2>/dev/null | awk '/^ +[0-9]/ && /~bpo/ { v = $1 } END { print v }')"
        [ -n "$want" ] || { log "--igb: $bpo has no qemu-system-x86"; exit 1; }
    fi
    stamp="$want ${QEMU_IGB_PACKAGES[*]}"
    if [ -x "$QDIR/root/usr/bin/qemu-system-x86_64" ] && [ "$(cat "$QDIR/.done" 2>/dev/null)" = "$stamp" ]; then
        return 0
    fi
    rm -rf "$QDIR"
    mkdir -p "$QDIR/deb" "$QDIR/root"
    for p in "${QEMU_IGB_PACKAGES[@]}"; do
        log "apt-get download $p/$bpo"
        (cd "$QDIR/deb" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" "$p/$bpo")
    done
    for deb in "$QDIR"/deb/*.deb; do dpkg-deb -x "$deb" "$QDIR/root"; done
    # Its shared libraries are bookworm's; install the ones qemu 7.2 did not need.
    local libs=()
    mapfile -t libs < <(dpkg-deb -f "$QDIR"/deb/qemu-system-x86_*.deb Depends | tr ',' '\n' |
        sed -e 's/^ *//' -e 's/[ (].*//' | grep '^lib' || true)
    missing=()
    for p in "${libs[@]}"; do installed "$p" || missing+=("$p"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "apt-get install ${missing[*]} (the igb qemu's libraries)"
        $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if ldd "$QDIR/root/usr/bin/qemu-system-x86_64" | grep 'not found' >&2; then
        log "--igb: the unpacked qemu misses libraries"; exit 1
    fi
    echo "$stamp" >"$QDIR/.done"
    log "qemu with igb ready: $("$QDIR/root/usr/bin/qemu-system-x86_64" --version | head -n1)"
}
[ "$igb" -eq 0 ] || fetch_qemu_igb

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
