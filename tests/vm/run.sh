#!/usr/bin/env bash
# Boots the real-kernel tier's guest under qemu (TCG) and runs the release `bond` binary in it.
#
#   tests/vm/run.sh              run every scenario (same as --tier)
#   tests/vm/run.sh --tier [NAME...]   run the scenarios, or only the named ones
#   tests/vm/run.sh --demo       the seed's SR-IOV failover bond NAD: ADD result + ip -d link
#   tests/vm/run.sh --bench [N]  N cycles per row (default 20): bond against upstream bond-cni
#   tests/vm/run.sh --shell      boot to an interactive guest shell (bond installed)
#   tests/vm/run.sh --sriov [N]  an SR-IOV node: q35 with two igb PFs (each on its own PCIe
#                                root port) under the backports qemu; N VFs per PF (default
#                                2), their sysfs shape, and the agent's discovery over it
#   tests/vm/run.sh --node DIR   an SR-IOV node of a Kubernetes control plane on the host:
#                                the --sriov machine plus a virtio disk with the node's
#                                binaries (tests/node/build.sh) and DIR/images/*.tar, and a
#                                user-network NIC whose only way out is 10.0.2.100:443 to the
#                                API server (DIR/apiserver-port on the host's loopback); DIR
#                                also holds node-name, ca.crt, kubelet.kubeconfig, numvfs.
#                                Runs until stopped (guest/node.sh)
#
# Env: BONDNET_BOND_BIN (default: the static build scripts/build-bond.sh makes),
#      BONDNET_UPSTREAM_BIN (--bench: the upstream plugin to compare with, shipped as
#      /opt/cni/bin/bond-upstream; bench.sh sets it),
#      BONDNET_BENCH_STARTS (--bench: binaries, space-separated, to compare by process start
#      only, e.g. two builds of bond; their basenames must differ),
#      BONDNET_VM_TIMEOUT (seconds, default 900), BONDNET_VM_SMP (default 2),
#      BONDNET_VM_SKIP_INSTALL=1 (do not run install-deps.sh),
#      BONDNET_VM_VERBOSE=1 (print every scenario's log, not only the failed ones),
#      BONDNET_DISCOVER_BIN (--sriov: the agent's discovery, default
#      target/debug/bondnet-discover, built if missing).
# Exit status: 0 when the guest finished and, for --tier, every scenario passed (1 when
# one failed, or the demo or bench went wrong; 2 setup; 3 boot or timeout).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VM_DIR="${BONDNET_VM_DIR:-$ROOT/target/vm}"
export BONDNET_VM_DIR="$VM_DIR"

log() { echo "vm: $*" >&2; }
die() { log "$*"; exit 2; }

mode=tier
args=()
case "${1:-}" in
    --tier) mode=tier; shift ;;
    --demo) mode=demo; shift ;;
    --bench) mode=bench; shift ;;
    --shell) mode=shell; shift ;;
    --sriov) mode=sriov; shift ;;
    --node) mode=node; shift ;;
    -h|--help) sed -n '2,27p' "${BASH_SOURCE[0]}"; exit 0 ;;
    --*) die "unknown option $1" ;;
esac
args=("$@")

install_args=()
case "$mode" in sriov|node) install_args=(--igb) ;; esac
if [ "${BONDNET_VM_SKIP_INSTALL:-0}" != 1 ]; then
    "$HERE/install-deps.sh" "${install_args[@]}" || die "install-deps.sh failed: cannot get qemu or the guest kernel"
fi
QEMU=qemu-system-x86_64
QEMU_DATA=()
if [ "$mode" = sriov ] || [ "$mode" = node ]; then
    # The backports qemu, unpacked by install-deps.sh --igb, with its own firmware first.
    # -audio none: its default audio backend is a loadable module, and the host's modules
    # are qemu 7.2's, which it refuses (loudly).
    qroot="$VM_DIR/qemu-igb/root"
    QEMU="$qroot/usr/bin/qemu-system-x86_64"
    [ -x "$QEMU" ] || die "no igb-capable qemu at $QEMU (run tests/vm/install-deps.sh --igb)"
    QEMU_DATA=(-L "$qroot/usr/share/qemu" -L "$qroot/usr/share/seabios" -audio none)
fi
command -v "$QEMU" >/dev/null || die "qemu-system-x86_64 is not installed"
eval "$("$HERE/build-image.sh")"
[ -s "${KERNEL:-}" ] && [ -s "${BASE:-}" ] || die "build-image.sh produced no kernel/base image"

cargo_release() {
    log "cargo build --release $*"
    (cd "$ROOT" && cargo build --release "$@") >&2 || die "cargo build --release $* failed"
}

# bond as it ships (static): scripts/build-bond.sh builds it and prints its path.
if [ -n "${BONDNET_BOND_BIN:-}" ]; then
    BOND_BIN="$BONDNET_BOND_BIN"
else
    BOND_BIN="$("$ROOT/scripts/build-bond.sh")" || die "scripts/build-bond.sh failed"
fi
[ -x "$BOND_BIN" ] || die "no bond binary at $BOND_BIN"

BENCH_BIN=""
if [ "$mode" = bench ]; then
    cargo_release -p bondnet-tests --bin bond-bench
    BENCH_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/bond-bench"
fi

# --- the per-run overlay: bond (+ libs), bond-bench, the guest scripts ------------------
stage="$(mktemp -d "$VM_DIR/stage-overlay.XXXXXX")"
initrd="$VM_DIR/initrd-run.$$.gz"
trap 'rm -rf "$stage" "$initrd" "$initrd.overlay"' EXIT
. "$HERE/copy-with-libs.sh"
# The node's agent installs bond itself (guest/node.sh checks that it did).
[ "$mode" = node ] || copy_with_libs "$stage" "$BOND_BIN" /opt/cni/bin/bond
[ -z "$BENCH_BIN" ] || copy_with_libs "$stage" "$BENCH_BIN" /usr/bin/bond-bench
# --bench with BONDNET_BENCH_STARTS: builds to compare by process start only (bond-bench --starts).
if [ "$mode" = bench ] && [ -n "${BONDNET_BENCH_STARTS:-}" ]; then
    for b in $BONDNET_BENCH_STARTS; do
        [ -x "$b" ] || die "BONDNET_BENCH_STARTS: $b is not an executable"
        copy_with_libs "$stage" "$b" "/opt/starts/$(basename "$b")"
    done
fi
if [ "$mode" = sriov ]; then
    DISCOVER_BIN="${BONDNET_DISCOVER_BIN:-$ROOT/target/debug/bondnet-discover}"
    if [ ! -x "$DISCOVER_BIN" ]; then
        [ -z "${BONDNET_DISCOVER_BIN:-}" ] || die "BONDNET_DISCOVER_BIN=$BONDNET_DISCOVER_BIN is not an executable"
        log "cargo build -p bondnet-operator --bin bondnet-discover"
        (cd "$ROOT" && cargo build -p bondnet-operator --bin bondnet-discover) >&2 ||
            die "cargo build --bin bondnet-discover failed"
    fi
    copy_with_libs "$stage" "$DISCOVER_BIN" /usr/bin/bondnet-discover
    # A debug build carries its debug info: the guest does not need it.
    strip --strip-debug "$stage/usr/bin/bondnet-discover"
    # igb needs dca and i2c-algo-bit; igbvf drives the VFs; e1000 the peer. guest/sriov.sh
    # loads them.
    for m in drivers/dca/dca.ko drivers/i2c/algos/i2c-algo-bit.ko \
        drivers/net/ethernet/intel/igb/igb.ko drivers/net/ethernet/intel/igbvf/igbvf.ko \
        drivers/net/ethernet/intel/e1000/e1000.ko; do
        ko="$(find "$VM_DIR/kernel/root/lib/modules" -path "*/kernel/$m" | head -n1)"
        [ -n "$ko" ] || die "the guest kernel lacks $m (needed for the igb PFs and their VFs)"
        install -D -m 0644 "$ko" "$stage/lib/modules/sriov/$(basename "$m")"
    done
fi
if [ "$mode" = bench ] && [ -n "${BONDNET_UPSTREAM_BIN:-}" ]; then
    [ -x "$BONDNET_UPSTREAM_BIN" ] || die "BONDNET_UPSTREAM_BIN=$BONDNET_UPSTREAM_BIN is not an executable"
    copy_with_libs "$stage" "$BONDNET_UPSTREAM_BIN" /opt/cni/bin/bond-upstream
    # Upstream's netlink library opens route, xfrm and netfilter sockets for every handle,
    # so the guest needs the xfrm and nfnetlink modules (a node has them); guest/bench.sh
    # loads them.
    for m in net/xfrm/xfrm_algo.ko net/xfrm/xfrm_user.ko net/netfilter/nfnetlink.ko; do
        ko="$(find "$VM_DIR/kernel/root/lib/modules" -path "*/kernel/$m" | head -n1)"
        [ -n "$ko" ] || die "the guest kernel lacks $m (needed by the upstream plugin)"
        install -D -m 0644 "$ko" "$stage/lib/modules/bench/$(basename "$m")"
    done
fi
disk=""
if [ "$mode" = node ]; then
    node_cfg="${args[0]:-}"
    [ -n "$node_cfg" ] && [ -d "$node_cfg" ] || die "--node needs a directory (node-name, ca.crt, kubelet.kubeconfig, apiserver-port, images/)"
    for f in node-name ca.crt kubelet.kubeconfig apiserver-port; do
        [ -s "$node_cfg/$f" ] || die "--node: no $node_cfg/$f"
    done
    args=()
    node_bin="${BONDNET_NODE_BIN:-}"
    [ -n "$node_bin" ] || node_bin="$("$ROOT/tests/node/build.sh")" || die "tests/node/build.sh failed (see target/node/build.log)"
    # The modules the node loads, with everything they need, where modprobe looks for them.
    kroot="$VM_DIR/kernel/root/lib/modules"
    kver="$(ls "$kroot" | sort -V | tail -n1)"
    # Debian's package ships no modules.dep (its postinst runs depmod): make it once.
    if [ ! -s "$kroot/$kver/modules.dep" ]; then
        command -v depmod >/dev/null || die "no depmod (install kmod)"
        depmod -b "$VM_DIR/kernel/root" "$kver" || die "depmod failed for $kver"
    fi
    want="crc32c_generic virtio_pci virtio_blk virtio_net ext4 overlay br_netfilter nf_tables nft_compat nft_chain_nat nf_nat nf_conntrack xt_nat xt_tcpudp xt_conntrack xt_MASQUERADE dca i2c-algo-bit igb igbvf e1000 bridge veth"
    closure() { # module names -> their .ko paths (relative to the module dir) and their dependencies'
        local m path
        for m in "$@"; do
            m="$(echo "$m" | tr '_' '-')"
            path="$(awk -F: -v m="$m" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); gsub(/_/, "-", n); if (n == m) { print $0; exit } }' "$kroot/$kver/modules.dep")"
            [ -n "$path" ] || die "the guest kernel has no module $m"
            echo "$path" | tr -d ':' | tr ' ' '\n' | sed '/^$/d'
        done | sort -u
    }
    kos="$(closure $want)" || die "cannot resolve the node's kernel modules"
    for ko in $kos; do
        install -D -m 0644 "$kroot/$kver/$ko" "$stage/lib/modules/$kver/$ko"
    done
    cp "$kroot/$kver/modules.dep" "$kroot/$kver/modules.order" "$kroot/$kver/modules.builtin" "$stage/lib/modules/$kver/" 2>/dev/null || true
    # iptables (nf_tables backend) for the kubernetes Service's one DNAT rule.
    xt="$(readlink -f "$(command -v iptables)")"
    copy_with_libs "$stage" "$xt" /usr/sbin/xtables-nft-multi
    ln -sf xtables-nft-multi "$stage/usr/sbin/iptables"
    # Its extensions (tcp, DNAT, MASQUERADE) where it looks for them: the real path of the
    # libraries' directory (/lib is a link to /usr/lib on the host, not in the guest).
    xtdir="$(readlink -f "$(dirname "$(ldd "$xt" | awk '/libxtables/ {print $3}')")/xtables")"
    [ -d "$xtdir" ] && { mkdir -p "$stage$xtdir"; cp -a "$xtdir/." "$stage$xtdir/"; }
    # bond's libraries: the agent installs bond itself, the node must be able to run it.
    copy_libs "$stage" "$BOND_BIN"
    mkdir -p "$stage/bondnet/node"
    cp "$node_cfg"/node-name "$node_cfg"/ca.crt "$node_cfg"/kubelet.kubeconfig "$stage/bondnet/node/"
    [ ! -f "$node_cfg/numvfs" ] || cp "$node_cfg/numvfs" "$stage/bondnet/node/"
    # The node's disk: containerd, runc, the kubelet, the CNI plugins and the images. Hard
    # links, so staging costs nothing; mke2fs -d needs neither root nor a loop device.
    dstage="$(mktemp -d "$VM_DIR/stage-disk.XXXXXX")"
    disk="$VM_DIR/node-disk.$$.img"
    trap 'rm -rf "$stage" "$initrd" "$initrd.overlay" "$dstage" "$disk"' EXIT
    mkdir -p "$dstage/bin" "$dstage/cni" "$dstage/images"
    for b in kubelet containerd containerd-shim-runc-v2 ctr runc; do cp -l "$node_bin/$b" "$dstage/bin/" 2>/dev/null || cp "$node_bin/$b" "$dstage/bin/"; done
    for b in host-local static loopback bridge host-device; do cp -l "$node_bin/$b" "$dstage/cni/" 2>/dev/null || cp "$node_bin/$b" "$dstage/cni/"; done
    for i in "$node_cfg"/images/*.tar; do [ -f "$i" ] && { cp -l "$i" "$dstage/images/" 2>/dev/null || cp "$i" "$dstage/images/"; }; done
    mb=$(( $(du -sm "$dstage" | cut -f1) * 11 / 10 + 64 ))
    mke2fs -q -t ext4 -d "$dstage" -F "$disk" "${mb}M" || die "mke2fs -d failed"
    rm -rf "$dstage"
    apiserver_port="$(cat "$node_cfg/apiserver-port")"
fi
mkdir -p "$stage/bondnet"
cp "$HERE"/guest/*.sh "$stage/bondnet/"
# Upstream bond-cni configs (the plugin's fixtures): one scenario runs each unchanged.
mkdir -p "$stage/bondnet/fixtures"
cp "$ROOT"/tests/fixtures/upstream/*.json "$stage/bondnet/fixtures/" 2>/dev/null || true
install -m 0755 "$HERE/guest/init" "$stage/bondnet/init"
printf '%s\n' "${args[@]}" >"$stage/bondnet/args"
echo "$mode" >"$stage/bondnet/mode"
[ "${BONDNET_VM_VERBOSE:-0}" != 1 ] || touch "$stage/bondnet/verbose"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 >"$initrd.overlay"
cat "$BASE" "$initrd.overlay" >"$initrd"

timeout_s="${BONDNET_VM_TIMEOUT:-900}"
smp="${BONDNET_VM_SMP:-2}"
mem="${BONDNET_VM_MEM:-1536}"
[ "$mode" != node ] || mem="${BONDNET_VM_MEM:-3072}"
qemu=("$QEMU" "${QEMU_DATA[@]}" -accel tcg,thread=multi -smp "$smp" -m "$mem" -nographic -no-reboot
      -nic none -kernel "$KERNEL" -initrd "$initrd"
      -append "console=ttyS0 quiet loglevel=3 panic=-1 bondnet.mode=$mode")
if [ "$mode" = sriov ] || [ "$mode" = node ]; then
    # Two 82576 PFs, each its own card on its own PCIe root port (SR-IOV needs PCIe), and an
    # e1000 as their peer, all on one QEMU hub: the hub repeats every frame to every port.
    qemu+=(-M q35)
    for k in 1 2; do
        qemu+=(-device "pcie-root-port,id=rp$k,chassis=$k,slot=$k"
               -netdev "hubport,id=pf$k,hubid=0"
               -device "igb,bus=rp$k,netdev=pf$k,romfile=")
    done
    qemu+=(-netdev hubport,id=peer,hubid=0 -device e1000,netdev=peer,romfile=)
fi
if [ "$mode" = node ]; then
    # The node's disk, and its one way out: restrict=on isolates the guest, and guestfwd
    # sends each connection to 10.0.2.100:443 to the API server on the host's loopback.
    busybox="$(command -v busybox)"
    qemu+=(-drive "file=$disk,if=virtio,format=raw,readonly=on"
           -netdev "user,id=mgmt,restrict=on,guestfwd=tcp:10.0.2.100:443-cmd:$busybox nc 127.0.0.1 $apiserver_port"
           -device virtio-net-pci,netdev=mgmt,romfile=)
fi
log "booting $(basename "$KERNEL") ($mode, smp $smp, timeout ${timeout_s}s)"

if [ "$mode" = shell ]; then
    exec "${qemu[@]}"
fi

out="$VM_DIR/last-$mode.log"
set +e
# qemu's serial console ends lines with CR LF. sed -u, not tr: the lines must stream.
# SeaBIOS writes its banner to the serial line too: keep it out of what is shown.
timeout --kill-after=10 "$timeout_s" "${qemu[@]}" </dev/null 2>&1 |
    sed -u -e 's/\r$//' -e 's/^.*Booting from ROM\.\.//' -e '/SeaBIOS (version/d' -e '/reboot: Power down/d' | tee "$out"
rc=("${PIPESTATUS[@]}")
set -e
if [ "${rc[0]}" -eq 124 ] || [ "${rc[0]}" -eq 137 ]; then
    log "TIMEOUT: the guest did not finish within ${timeout_s}s (log: $out)"; exit 3
fi
grep -q '^BONDNET-DONE' "$out" || { log "the guest stopped before it finished (log: $out)"; exit 3; }
if grep -q '^BONDNET-BOOT-FAIL' "$out"; then exit 3; fi
# demo and bench say BONDNET-FAIL when their run went wrong.
if grep -q '^BONDNET-FAIL' "$out"; then exit 1; fi
if [ "$mode" = tier ] || [ "$mode" = sriov ]; then
    pass=$(grep -c '^SCENARIO .* PASS$' "$out" || true)
    fail=$(grep -c '^SCENARIO .* FAIL' "$out" || true)
    echo "vm-tier: $pass passed, $fail failed"
    [ "$fail" -eq 0 ] && [ "$pass" -gt 0 ] || exit 1
fi
exit 0
