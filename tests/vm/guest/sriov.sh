#!/bin/sh
# The SR-IOV node's first checks (run.sh --sriov): QEMU's igb (Intel 82576) PFs, each on
# its own PCIe root port, with the guest's own igb and igbvf drivers, and an e1000 peer on
# the same QEMU hub. Loads the drivers, enables VFs on every PF, reads the sysfs shape back
# as bondnet's agent reads it, runs the agent's discovery (bondnet-discover) over the
# guest's real sysfs, and bonds a VF of each PF with the release `bond` binary, as Multus
# would after sriov-cni, through a PF going down. Prints one `SCENARIO <name> PASS` or
# `SCENARIO <name> FAIL: <why>` per check, after its log on failure.
#
# The number of VFs per PF is the first argument (default 2).
IP=/usr/sbin/ip
NUMVFS=${1:-2}
W=/tmp/w/sriov
mkdir -p "$W"
: >"$W/log"

note() { echo "$*" >>"$W/log"; }
fail() {
    echo "$*" >"$W/why"
    exit 1
}
# scenario NAME FUNCTION: runs FUNCTION in a subshell, with the tier's helpers
# (lib.sh, scenarios.sh), and reports it.
scenario() {
    local name=$1
    shift
    rm -f "$W/why"
    : >"$W/log"
    if (. /bondnet/lib.sh; . /bondnet/scenarios.sh; "$@") >>"$W/log" 2>&1 </dev/null; then
        if [ -e /bondnet/verbose ]; then
            echo "--- log of $name"
            sed 's/^/  | /' "$W/log"
        fi
        echo "SCENARIO $name PASS"
    else
        echo "--- log of $name"
        cat "$W/log"
        echo "SCENARIO $name FAIL: $(cat "$W/why" 2>/dev/null || echo "exited non-zero")"
    fi
}
# The basename of a symlink's target (a PCI address, a driver's name), empty when absent.
link_base() {
    [ -L "$1" ] || return 0
    basename "$(readlink "$1")"
}

for m in dca i2c-algo-bit igb igbvf e1000; do
    insmod /lib/modules/sriov/$m.ko || { echo "BONDNET-FAIL: insmod $m.ko failed"; exit 1; }
done

# The PFs: netdevs whose PCI device is driven by igb. igb probes each device as it loads;
# wait a little for the netdevs all the same.
pfs() {
    local n
    for n in /sys/class/net/*; do
        [ "$(link_base "$n/device/driver")" = igb ] && basename "$n"
    done
}
i=0
while [ "$(pfs | wc -l)" -lt "${BONDNET_SRIOV_PFS:-2}" ] && [ $i -lt 50 ]; do
    sleep 0.2
    i=$((i + 1))
done
PFS=$(pfs | tr '\n' ' ')
echo "igb PFs: $PFS"

t_pfs() {
    local pf dev cards=""
    [ "$(echo $PFS | wc -w)" -ge 2 ] || fail "expected two igb PFs, found: '$PFS'"
    for pf in $PFS; do
        dev=/sys/class/net/$pf/device
        note "$pf: $(link_base "$dev") vendor $(cat $dev/vendor) device $(cat $dev/device) totalvfs $(cat $dev/sriov_totalvfs) numvfs $(cat $dev/sriov_numvfs)"
        [ "$(cat $dev/vendor)" = 0x8086 ] || fail "$pf: vendor $(cat $dev/vendor), not 0x8086"
        [ "$(cat $dev/device)" = 0x10c9 ] || fail "$pf: device $(cat $dev/device), not 0x10c9 (82576)"
        [ "$(cat $dev/sriov_totalvfs)" = 7 ] || fail "$pf: sriov_totalvfs is $(cat $dev/sriov_totalvfs), not 7"
        [ "$(cat $dev/sriov_numvfs)" = 0 ] || fail "$pf: sriov_numvfs is $(cat $dev/sriov_numvfs) before any VF was asked for"
        [ ! -e $dev/physfn ] || fail "$pf: a PF has a physfn link"
        # Each PF is its own card: the PCI address without its function differs.
        cards="$cards $(link_base "$dev" | sed 's/\.[0-7]$//')"
    done
    [ "$(echo $cards | tr ' ' '\n' | sort -u | wc -l)" = "$(echo $PFS | wc -w)" ] ||
        fail "two PFs share a card:$cards"
}

t_vfs() {
    local pf dev k vf vfdev vfs
    for pf in $PFS; do
        dev=/sys/class/net/$pf/device
        echo "$NUMVFS" >$dev/sriov_numvfs || fail "$pf: echo $NUMVFS > sriov_numvfs failed"
    done
    # The VFs' netdevs come up as igbvf probes them.
    i=0
    while [ "$(ls -d /sys/class/net/*/device/physfn 2>/dev/null | wc -l)" -lt $(($(echo $PFS | wc -w) * NUMVFS)) ] && [ $i -lt 50 ]; do
        sleep 0.2
        i=$((i + 1))
    done
    for pf in $PFS; do
        dev=/sys/class/net/$pf/device
        [ "$(cat $dev/sriov_numvfs)" = "$NUMVFS" ] || fail "$pf: sriov_numvfs reads $(cat $dev/sriov_numvfs), not $NUMVFS"
        k=0
        while [ $k -lt "$NUMVFS" ]; do
            [ -L $dev/virtfn$k ] || fail "$pf: no virtfn$k link"
            vfdev=$dev/virtfn$k
            [ "$(link_base $vfdev/physfn)" = "$(link_base $dev)" ] ||
                fail "$pf: virtfn$k's physfn is $(link_base $vfdev/physfn), not $(link_base $dev)"
            [ "$(link_base $vfdev/driver)" = igbvf ] || fail "$pf: virtfn$k's driver is '$(link_base $vfdev/driver)', not igbvf"
            [ "$(cat $vfdev/device)" = 0x10ca ] || fail "$pf: virtfn$k's device is $(cat $vfdev/device), not 0x10ca"
            vfs=$(ls $vfdev/net 2>/dev/null)
            [ -n "$vfs" ] || fail "$pf: virtfn$k ($(link_base $vfdev)) has no netdev"
            note "$pf virtfn$k: $(link_base $vfdev) netdev $vfs driver $(link_base $vfdev/driver)"
            k=$((k + 1))
        done
        [ ! -e $dev/virtfn$NUMVFS ] || fail "$pf: a virtfn$NUMVFS link beyond the $NUMVFS VFs asked for"
    done
    # What the PF's netlink says about its VFs (MACs, spoofchk, trust).
    for pf in $PFS; do note "$($IP -d link show $pf)"; done
}

t_discover() {
    local out=$W/discover.json pf dev n
    command -v bondnet-discover >/dev/null || fail "no bondnet-discover in the guest"
    bondnet-discover / >"$out" 2>>"$W/log" || fail "bondnet-discover exited non-zero"
    note "$(cat $out)"
    n=$(jq '.pfs | length' $out)
    [ "$n" = "$(echo $PFS | wc -w)" ] || fail "discovery found $n PFs, not $(echo $PFS | wc -w) ($PFS)"
    [ "$(jq '.skipped | length' $out)" = 0 ] || fail "discovery skipped PFs: $(jq -c .skipped $out)"
    for pf in $PFS; do
        dev=/sys/class/net/$pf/device
        jq -e --arg pf "$pf" --arg pci "$(link_base $dev)" --argjson n "$NUMVFS" --arg mac "$(cat /sys/class/net/$pf/address)" '
            .pfs[] | select(.name == $pf)
            | .pciAddress == $pci and .vendor == "8086" and .deviceId == "10c9"
              and .driver == "igb" and .vfDriver == "igbvf" and .vfDeviceId == "10ca"
              and .totalVfs == 7 and .numVfs == $n and .mac == $mac
              and .nicId == ($pci | sub("\\.[0-7]$"; ""))' $out >/dev/null ||
            fail "discovery's entry for $pf is not its sysfs: $(jq -c --arg pf "$pf" '.pfs[] | select(.name == $pf)' $out)"
    done
    [ "$(jq '[.pfs[].nicId] | unique | length' $out)" = "$n" ] || fail "discovery puts two PFs on one card"
}

# The netdev of a PF's VF number K.
vf_netdev() { ls "/sys/class/net/$1/device/virtfn$2/net" 2>/dev/null; }
carrier() { [ "$(cat "/sys/class/net/$1/carrier" 2>/dev/null)" = 1 ]; }

# The seed's SR-IOV failover bond over real VFs: VF 0 of each PF moved into the pod as
# net1 and net2 (what sriov-cni does for Multus), `bond` ADD (active-backup, failOverMac 1:
# the PF's spoof check drops frames from any MAC but the VF's own), a ping to the e1000
# peer on the same QEMU hub; the active port's PF goes down, its VF loses carrier, the bond
# fails over and the ping goes on; the PF comes back, DEL, and the VFs go home.
t_vf_bond() {
    local pf1 pf2 v1 v2 peer act other down m1 m2
    set -- $PFS
    pf1=$1
    pf2=$2
    v1=$(vf_netdev "$pf1" 0)
    v2=$(vf_netdev "$pf2" 0)
    [ -n "$v1" ] && [ -n "$v2" ] || fail "no VF 0 netdev on $pf1 ('$v1') or $pf2 ('$v2')"
    for n in /sys/class/net/*; do
        [ "$(link_base "$n/device/driver")" = e1000 ] && peer=$(basename "$n")
    done
    [ -n "$peer" ] || fail "no e1000 peer netdev"
    must $IP link set "$pf1" up
    must $IP link set "$pf2" up
    pod p
    pod far
    must $IP link set "$peer" netns far
    must $IP -n far addr add "$GW/24" dev "$peer"
    must $IP -n far link set "$peer" up
    m1=$(cat "/sys/class/net/$v1/address")
    m2=$(cat "/sys/class/net/$v2/address")
    note "$pf1 VF 0 is $v1 ($m1), $pf2 VF 0 is $v2 ($m2), the peer is $peer"
    must $IP link set "$v1" netns p
    must $IP -n p link set "$v1" name net1
    must $IP link set "$v2" netns p
    must $IP -n p link set "$v2" name net2
    bondconf "$W/c.json" active-backup true "net1 net2" '{"failOverMac": 1, "miimon": "100"}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    assert_bond p bond0 active-backup "net1 net2"
    [ "$(mac p net1)" = "$m1" ] && [ "$(mac p net2)" = "$m2" ] ||
        fail "failOverMac 1 must leave the VFs' MACs alone: net1 $(mac p net1) (was $m1), net2 $(mac p net2) (was $m2)"
    # A VF's carrier follows its PF's, which takes a few seconds after the PF goes up.
    wait_for 20 sh -c "$IP netns exec p cat /proc/net/bonding/bond0 | grep -q '^Currently Active Slave: net'" ||
        fail "no active port within 20 s: $(bonding_proc p bond0 | tr '\n' ';')"
    act=$(active_port p bond0)
    case "$act" in
        net1) other=net2 down=$pf1 ;;
        net2) other=net1 down=$pf2 ;;
        *) fail "active port is '$act'" ;;
    esac
    [ "$(mac p bond0)" = "$(mac p "$act")" ] || fail "bond MAC $(mac p bond0) is not the active port's ($act $(mac p "$act"))"
    ping_ok p "$GW" || fail "no ping reply from the e1000 peer through $act"
    must $IP link set "$down" down
    wait_for 20 sh -c "$IP netns exec p cat /proc/net/bonding/bond0 | grep -qx 'Currently Active Slave: $other'" ||
        fail "with $down down the active port did not move from $act to $other: $(bonding_proc p bond0 | tr '\n' ';')"
    [ "$(nsexec p cat "/sys/class/net/$act/carrier")" = 0 ] || fail "$act still has carrier with its PF $down down"
    [ "$(mac p bond0)" = "$(mac p "$other")" ] || fail "after failover the bond MAC $(mac p bond0) is not $other's ($(mac p "$other"))"
    ping_ok p "$GW" || fail "no ping reply after the failover to $other"
    note "after $down went down: $(bonding_proc p bond0 | grep -E '^(Currently Active|Slave Interface|MII Status|Link Failure)' | tr '\n' ';')"
    must $IP link set "$down" up
    wait_for 20 sh -c "[ \"\$($IP netns exec p cat /sys/class/net/$act/carrier)\" = 1 ]" ||
        fail "$act has no carrier 20 s after its PF $down came back"
    ping_ok p "$GW" || fail "no ping reply after $down came back"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    assert_released p bond0 "net1 net2"
    [ "$(mac p net1)" = "$m1" ] && [ "$(mac p net2)" = "$m2" ] || fail "DEL changed the VFs' MACs"
    must $IP -n p link set net1 down
    must $IP -n p link set net1 name "$v1"
    must $IP -n p link set "$v1" netns 1
    must $IP -n p link set net2 down
    must $IP -n p link set net2 name "$v2"
    must $IP -n p link set "$v2" netns 1
    [ "$(ipam_allocs "$NET")" = 0 ] || fail "host-local still holds $(ipam_allocs "$NET") address(es) after DEL"
}

scenario sriov-igb-pfs-on-their-own-cards t_pfs
scenario sriov-numvfs-creates-igbvf-vfs t_vfs
scenario sriov-agent-discovery-reads-the-real-sysfs t_discover
scenario sriov-bond-of-vfs-on-two-pfs-fails-over t_vf_bond
echo "=== bondnet-discover /"
cat "$W/discover.json" 2>/dev/null
echo "=== sysfs"
for pf in $PFS; do
    dev=/sys/class/net/$pf/device
    echo "$pf -> $(readlink $dev) driver=$(link_base $dev/driver) totalvfs=$(cat $dev/sriov_totalvfs) numvfs=$(cat $dev/sriov_numvfs)"
    for v in $dev/virtfn*; do
        [ -L "$v" ] && echo "  $(basename $v) -> $(link_base $v) driver=$(link_base $v/driver) netdev=$(ls $v/net 2>/dev/null) physfn=$(link_base $v/physfn)"
    done
done
