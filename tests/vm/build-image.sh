#!/usr/bin/env bash
# Builds the cached parts of the real-kernel tier's guest under target/vm/:
#
#   target/vm/vmlinux-<kver>     the uncompressed kernel, cut out of Debian's vmlinuz at
#                                the xz magic (boots in seconds under TCG; bzImage is slower)
#   target/vm/base-<kver>.cpio.gz  busybox-static, Debian's ip (+ libs), jq (+ libs),
#                                tls.ko/bonding.ko/veth.ko, bridge.ko (+ stp, llc), dummy.ko, host-local and static IPAM, /init
#
# Prints two lines, `KERNEL=<path>` and `BASE=<path>`. Rebuilds only when this script or
# guest/base-init changed, or the kernel did. The project's own binaries and the scenario
# scripts are not here: tests/vm/run.sh packs them into a small second cpio per run.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VM_DIR="${BONDNET_VM_DIR:-$ROOT/target/vm}"
KROOT="$VM_DIR/kernel/root"

log() { echo "build-image: $*" >&2; }
die() { log "$*"; exit 1; }

[ -d "$KROOT/lib/modules" ] || die "no unpacked guest kernel under $KROOT: run tests/vm/install-deps.sh"
kver="$(ls "$KROOT/lib/modules" | sort -V | tail -n1)"
[ -n "$kver" ] || die "no module tree under $KROOT/lib/modules"

# --- vmlinux ---------------------------------------------------------------------------
vmlinuz="$KROOT/boot/vmlinuz-$kver"
vmlinux="$VM_DIR/vmlinux-$kver"
if [ ! -s "$vmlinux" ]; then
    [ -f "$vmlinuz" ] || die "missing $vmlinuz"
    log "extracting vmlinux from $(basename "$vmlinuz")"
    tmp="$vmlinux.tmp"
    found=0
    # Every offset of the xz stream magic FD 37 7A 58 5A 00; the first that decompresses to
    # an ELF file is the kernel (xz complains about the bytes after the stream: ignore it).
    for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | cut -d: -f1); do
        tail -c "+$((off + 1))" "$vmlinuz" | xz -dcq >"$tmp" 2>/dev/null || true
        if [ "$(head -c 4 "$tmp" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ]; then
            found=1; break
        fi
    done
    [ "$found" -eq 1 ] || { rm -f "$tmp"; die "no xz-compressed ELF kernel inside $vmlinuz"; }
    mv "$tmp" "$vmlinux"
fi

# --- base initramfs ---------------------------------------------------------------------
base="$VM_DIR/base-$kver.cpio.gz"
stamp="$VM_DIR/base-$kver.stamp"
want_stamp="$(cat "$HERE/build-image.sh" "$HERE/copy-with-libs.sh" "$HERE/guest/base-init" | sha256sum | cut -d' ' -f1)"
if [ -s "$base" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want_stamp" ]; then
    echo "KERNEL=$vmlinux"
    echo "BASE=$base"
    exit 0
fi

BUSYBOX="$(command -v busybox || true)"
[ -n "$BUSYBOX" ] && file -L "$BUSYBOX" 2>/dev/null | grep -c 'statically linked' >/dev/null \
    || BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "busybox-static is not installed"
IP_BIN=/usr/sbin/ip
JQ_BIN="$(command -v jq || true)"
CNI_DIR=/usr/lib/cni
for f in "$IP_BIN" "$JQ_BIN" "$CNI_DIR/host-local" "$CNI_DIR/static"; do
    [ -n "$f" ] && [ -x "$f" ] || die "missing $f (run tests/vm/install-deps.sh)"
done

stage="$(mktemp -d "$VM_DIR/stage-base.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
log "staging base initramfs for $kver"

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,lib64,lib/modules,proc,sys,dev,run,tmp,var/lib,etc,opt/cni/bin,root}
ln -s ../run "$stage/var/run"
cp "$BUSYBOX" "$stage/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    case "$applet" in busybox|ip) continue ;; esac
    [ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
done

# Copy a dynamically linked binary and every library ldd names, at the same paths.
. "$HERE/copy-with-libs.sh"
copy_with_libs "$stage" "$IP_BIN" /usr/sbin/ip
copy_with_libs "$stage" "$JQ_BIN" /usr/bin/jq
copy_with_libs "$stage" "$CNI_DIR/host-local" /opt/cni/bin/host-local
copy_with_libs "$stage" "$CNI_DIR/static" /opt/cni/bin/static
# The Go plugins are often static; make sure the loader exists for the dynamic ones.
[ -e "$stage/lib64/ld-linux-x86-64.so.2" ] || \
    install -D -m 0755 "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "$stage/lib64/ld-linux-x86-64.so.2"

mods="$KROOT/lib/modules/$kver/kernel"
for m in net/tls/tls.ko drivers/net/bonding/bonding.ko drivers/net/veth.ko \
    net/llc/llc.ko net/802/stp.ko net/bridge/bridge.ko drivers/net/dummy.ko; do
    [ -f "$mods/$m" ] || die "kernel $kver lacks $m"
    cp "$mods/$m" "$stage/lib/modules/"
done
echo "$kver" >"$stage/etc/bondnet-kernel"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
printf 'root:x:0:\n' >"$stage/etc/group"
install -m 0755 "$HERE/guest/base-init" "$stage/init"

(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 >"$base.tmp"
mv "$base.tmp" "$base"
echo "$want_stamp" >"$stamp"
log "base image $(du -h "$base" | cut -f1) at $base"
echo "KERNEL=$vmlinux"
echo "BASE=$base"
