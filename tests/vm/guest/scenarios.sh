# The real-kernel tier's scenarios. Each t_* function runs in a fresh subshell with lib.sh
# sourced and the guest reset (no netns, no links but lo, no IPAM state); it asserts facts
# read back from the kernel (mode, ports, addresses, MACs, pings), not just exit codes.
# tier.sh holds the list that names them.

NET=bondnet-vm     # the CNI network name (host-local keeps its state under it)
SUBNET=10.10.0.0/24
GW=10.10.0.1

# bondconf OUT MODE LINKS_IN_CONTAINER "LINK..." [EXTRA_JSON]: a bond config with
# host-local IPAM on $SUBNET; EXTRA_JSON is merged over it (recursively; a top-level
# null removes the key).
bondconf() {
    local extra=${5:-}
    [ -n "$extra" ] || extra='{}'
    jq -M -n --arg net "$NET" --arg mode "$2" --argjson lic "$3" --arg links "$4" \
        --arg subnet "$SUBNET" --arg gw "$GW" --argjson extra "$extra" '
        {cniVersion: "1.0.0", name: $net, type: "bond", mode: $mode, miimon: 100,
         linksInContainer: $lic, links: ($links | split(" ") | map({name: .})),
         ipam: {type: "host-local", subnet: $subnet, gateway: $gw,
                rangeStart: "10.10.0.10", rangeEnd: "10.10.0.250"}} * $extra
        | with_entries(select(.value != null))' >"$1" ||
        fail "cannot write config $1"
    note "config $1: $(cat "$1")"
}

# assert_bond POD BOND MODE "PORTS": the bond exists with MODE, exactly PORTS, all up.
# (One `ip -d link` read for all of it: each ip call costs ~0.1 s under TCG.)
assert_bond() {
    local b=$2 line m p
    links "$1" >"$W/links.$1"
    line=$(awk -v b="$b" '$1 == b' "$W/links.$1")
    [ -n "$line" ] || fail "no $b in netns $1 after ADD"
    set -- "$1" "$b" "$3" "$4" $line
    [ "${10}" = bond ] || fail "$b in $1 is a '${10}' link, not a bond"
    [ "${8}" = up ] || fail "$b is not up after ADD"
    m=$(bond_mode "$1" "$b")
    [ "$m" = "$3" ] || fail "$b has mode '$m', configured '$3'"
    p=$(awk -v b="$b" '$5 == b { print $1 }' "$W/links.$1" | sort | tr '\n' ' ' | sed 's/ $//')
    [ "$p" = "$4" ] || fail "$b has ports '$p', expected '$4'"
    awk -v b="$b" '$5 == b && ($4 != "up" || $7 != "bond_slave") { print; bad = 1 } END { exit bad }' \
        "$W/links.$1" >"$W/badports" || fail "ports of $b not up or without bond port details: $(cat "$W/badports")"
}

# assert_opts POD BOND "OPTION VALUE ...": each kernel bond option (as ip -d names it)
# has the value.
assert_opts() {
    local got
    set -- "$1" "$2" $3
    local ns=$1 b=$2
    shift 2
    while [ $# -ge 2 ]; do
        got=$(bond_opt "$ns" "$b" "$1")
        [ "$got" = "$2" ] || fail "$b: kernel has $1 '$got', configured '$2' ($(ipn "$ns" -d link show "$b" | tail -n 1))"
        shift 2
    done
}

# assert_released POD BOND "PORTS": after DEL: no bond, each port present and free.
assert_released() {
    local line
    links "$1" >"$W/links.$1"
    [ -z "$(awk -v b="$2" '$1 == b' "$W/links.$1")" ] || fail "$2 still exists in $1 after DEL"
    for l in $3; do
        line=$(awk -v l="$l" '$1 == l' "$W/links.$1")
        [ -n "$line" ] || fail "port $l is gone from $1 after DEL"
        [ "$(echo "$line" | cut -d' ' -f5)" = "-" ] || fail "$l still has a controller after DEL: $line"
    done
}

assert_ipam_empty() {
    local n
    n=$(ipam_allocs "$NET")
    [ "$n" -eq 0 ] || fail "$1: host-local still holds $n address(es): $(ls "$IPAM_DIR/$NET")"
}

# --- scenarios --------------------------------------------------------------------------

t_version() {
    cni VERSION - "" /dev/null
    expect_ok "VERSION"
    for v in 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0; do
        jout '.supportedVersions[]' | grep -qx "$v" || fail "VERSION does not list $v: $OUT"
    done
}

# t_mode MODE: the bond is built with MODE over two VFs, carries the IPAM address and
# passes traffic to the switch; DEL takes it all back.
t_mode() {
    local mode=$1 a
    pair_pod p sw "$GW/24"
    snapshot p >"$W/before"
    bondconf "$W/c.json" "$mode" true "net1 net2"
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD $mode"
    assert_bond p bond0 "$mode" "net1 net2"
    a=$(jout '.ips[0].address')
    case "$a" in 10.10.0.*/24) ;; *) fail "ADD result has no address from $SUBNET: $OUT" ;; esac
    [ "$(addrs p bond0)" = "$a" ] || fail "bond0 has addresses '$(addrs p bond0)', result says $a"
    ping_ok p "$GW" || fail "no ping reply from the switch ($GW) over the $mode bond"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL $mode"
    assert_released p bond0 "net1 net2"
    same_snapshot p "$W/before" "after DEL"
    assert_ipam_empty "after DEL"
}

# Active-backup with failOverMac 1 (active): slaves keep their own MACs, the bond takes the
# active one's; traffic survives the active slave's switch port going down.
t_failover() {
    local act other bmac m1 m2 newact
    pair_pod p sw "$GW/24"
    m1=$(mac p net1)
    m2=$(mac p net2)
    bondconf "$W/c.json" active-backup true "net1 net2" '{"failOverMac": 1, "miimon": "100"}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    assert_bond p bond0 active-backup "net1 net2"
    [ "$(bond_opt p bond0 fail_over_mac)" = active ] ||
        fail "fail_over_mac is '$(bond_opt p bond0 fail_over_mac)', configured 1 (active)"
    [ "$(mac p net1)" = "$m1" ] && [ "$(mac p net2)" = "$m2" ] ||
        fail "failOverMac 1 must leave slave MACs alone: net1 $(mac p net1) (was $m1), net2 $(mac p net2) (was $m2)"
    wait_for 5 sh -c "[ -n \"\$($IP netns exec p cat /proc/net/bonding/bond0 | sed -n 's/^Currently Active Slave: //p' | grep -v None)\" ]" ||
        fail "no active slave: $(bonding_proc p bond0 | tr '\n' ';')"
    act=$(active_port p bond0)
    case "$act" in net1) other=net2 ;; net2) other=net1 ;; *) fail "active slave is '$act'" ;; esac
    bmac=$(mac p bond0)
    [ "$bmac" = "$(mac p "$act")" ] || fail "bond MAC $bmac is not the active slave's ($act $(mac p "$act"))"
    ping_ok p "$GW" || fail "no ping reply before failover"
    # The switch port of the active VF goes down: the VF loses carrier, miimon notices.
    must $IP -n sw link set "pp${act#net}" down
    wait_for 10 sh -c "$IP netns exec p cat /proc/net/bonding/bond0 | grep -qx 'Currently Active Slave: $other'" ||
        fail "active slave did not move from $act to $other: $(bonding_proc p bond0 | tr '\n' ';')"
    newact=$(active_port p bond0)
    [ "$(mac p bond0)" = "$(mac p "$newact")" ] ||
        fail "after failover bond MAC $(mac p bond0) is not the new active slave's ($newact $(mac p "$newact"))"
    ping_ok p "$GW" || fail "no ping reply after failover to $newact"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    assert_released p bond0 "net1 net2"
    [ "$(mac p net1)" = "$m1" ] && [ "$(mac p net2)" = "$m2" ] || fail "slave MACs changed by DEL"
}

# 802.3ad against a peer 802.3ad bond in the switch netns: one aggregator, both ports, the
# partner is the peer bond.
t_lacp() {
    local pmac agg
    pod p
    pod sw
    must $IP -n sw link add pb type bond mode 802.3ad miimon 100 lacp_rate fast
    vf p net1 sw sw1
    vf p net2 sw sw2
    for l in sw1 sw2; do
        must $IP -n sw link set "$l" down
        must $IP -n sw link set "$l" master pb
        must $IP -n sw link set "$l" up
    done
    must $IP -n sw addr add "$GW/24" dev pb
    must $IP -n sw link set pb up
    pmac=$(mac sw pb)
    bondconf "$W/c.json" 802.3ad true "net1 net2" '{"lacpRate": "fast", "xmitHashPolicy": "layer3+4"}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD 802.3ad"
    assert_bond p bond0 802.3ad "net1 net2"
    [ "$(bond_opt p bond0 lacp_rate)" = fast ] || fail "lacp_rate is $(bond_opt p bond0 lacp_rate), configured fast"
    [ "$(bond_opt p bond0 xmit_hash_policy)" = layer3+4 ] ||
        fail "xmit_hash_policy is $(bond_opt p bond0 xmit_hash_policy), configured layer3+4"
    wait_for 20 sh -c "$IP netns exec p cat /proc/net/bonding/bond0 | grep -A3 '^Active Aggregator Info' | grep -q 'Number of ports: 2'" ||
        fail "no aggregator with 2 ports within 20 s: $(bonding_proc p bond0 | tr '\n' ';')"
    bonding_proc p bond0 >"$W/proc"
    cat "$W/proc" >>"$W/log"
    grep -A6 '^Active Aggregator Info' "$W/proc" | grep -qi "Partner Mac Address: $pmac" ||
        fail "the aggregator's partner is not the peer bond ($pmac)"
    agg=$(sed -n 's/^Aggregator ID: //p' "$W/proc" | sort -u | tr '\n' ' ')
    [ "$(echo $agg | wc -w)" -eq 1 ] || fail "ports are in different aggregators: $agg"
    ping_ok p "$GW" || fail "no ping reply from the peer bond over LACP"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    assert_released p bond0 "net1 net2"
    assert_ipam_empty "after DEL"
}

# Multus style: the VFs are already in the pod. The result lists bond and ports in the pod.
t_lic_true() {
    local ns_path="$NETNS_DIR/p" n
    pair_pod p sw "$GW/24"
    snapshot host >"$W/host.before"
    bondconf "$W/c.json" balance-xor true "net1 net2"
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    assert_bond p bond0 balance-xor "net1 net2"
    for l in bond0 net1 net2; do
        n=$(jout --arg l "$l" --arg s "$ns_path" '[.interfaces[] | select(.name == $l and .sandbox == $s)] | length')
        [ "$n" = 1 ] || fail "result does not list $l with sandbox $ns_path: $OUT"
        [ "$(jout --arg l "$l" '.interfaces[] | select(.name == $l) | .mac' | tr A-F a-f)" = "$(mac p "$l")" ] ||
            fail "result MAC of $l is not the live one ($(mac p "$l")): $OUT"
    done
    [ "$(jout '.interfaces[.ips[0].interface].name')" = bond0 ] || fail "result's IP does not point at bond0: $OUT"
    same_snapshot host "$W/host.before" "linksInContainer true must not touch the host"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    assert_released p bond0 "net1 net2"
}

# linksInContainer false: host links move into the pod, and back under their names on DEL.
t_lic_false() {
    pod p
    switch sw "$GW/24"
    vf host hvf1 sw swp1 1500
    vf host hvf2 sw swp2 9000
    must $IP link set hvf1 up
    must $IP link set hvf2 address 02:00:00:00:0f:02
    snapshot host >"$W/host.before"
    snapshot p >"$W/pod.before"
    bondconf "$W/c.json" active-backup false "hvf1 hvf2"
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    ! has_link host hvf1 && ! has_link host hvf2 || fail "the host links are still in the host netns after ADD"
    assert_bond p bond0 active-backup "hvf1 hvf2"
    [ "$(mtu p bond0)" = 1500 ] || fail "bond0 MTU is $(mtu p bond0), smallest port MTU is 1500"
    [ "$(mac p hvf1)" = "$(mac p hvf2)" ] || fail "with failOverMac 0 the kernel gives both ports one MAC"
    ping_ok p "$GW" || fail "no ping reply over the moved links"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    ! has_link p bond0 || fail "bond0 still in the pod after DEL"
    ! has_link p hvf1 && ! has_link p hvf2 || fail "links still in the pod after DEL"
    same_snapshot host "$W/host.before" "host links back under their names, MAC, MTU, state"
    same_snapshot p "$W/pod.before" "pod after DEL"
    assert_ipam_empty "after DEL"
}

# linksInContainer false must refuse a host link that carries a node address or the
# node's default route, and leave it where it is.
t_lic_false_refuses_addressed() {
    pod p
    switch sw
    vf host hvf1 sw swp1
    vf host hvf2 sw swp2
    must $IP addr add 10.99.0.2/24 dev hvf1
    must $IP link set hvf1 up
    snapshot host >"$W/host.before"
    bondconf "$W/c.json" active-backup false "hvf1 hvf2" '{"failOverMac": 1}'
    cni ADD p bond0 "$W/c.json"
    expect_err "ADD over a host link with an address"
    err_text | grep -q hvf1 || fail "the error does not name hvf1: $OUT"
    same_snapshot host "$W/host.before" "refused ADD"
    ! has_link p bond0 || fail "a bond was left in the pod"
    assert_ipam_empty "refused ADD"

    # No address, but the node's default route goes out through it.
    vf host hvf3 sw swp3
    must $IP link set hvf3 up
    must $IP route add default dev hvf3
    snapshot host >"$W/host.before"
    bondconf "$W/r.json" active-backup false "hvf2 hvf3" '{"failOverMac": 1}'
    cni ADD p bond0 "$W/r.json"
    expect_err "ADD over the host link with the default route"
    err_text | grep -q hvf3 || fail "the error does not name hvf3: $OUT"
    same_snapshot host "$W/host.before" "refused ADD (default route)"
    $IP route show default | grep -q 'dev hvf3' || fail "the host's default route via hvf3 is gone"
    assert_ipam_empty "refused ADD (default route)"
}

# mtu set: the bond and its ports take it; DEL gives the ports their MTU back.
t_mtu_set() {
    pod p
    switch sw "$GW/24"
    vf p net1 sw pp1 9000
    vf p net2 sw pp2 9000
    must $IP -n sw link set br0 mtu 9000
    snapshot p >"$W/before"
    bondconf "$W/c.json" balance-rr true "net1 net2" '{"mtu": 4000}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    assert_bond p bond0 balance-rr "net1 net2"
    [ "$(mtu p bond0)" = 4000 ] || fail "bond0 MTU is $(mtu p bond0), configured 4000"
    [ "$(mtu p net1)" = 4000 ] && [ "$(mtu p net2)" = 4000 ] ||
        fail "ports have MTU $(mtu p net1)/$(mtu p net2), bond has 4000"
    nsexec p ping -c 1 -W 2 -s 3900 "$GW" >>"$W/log" 2>&1 || ping_ok p "$GW" ||
        fail "no ping reply through the MTU 4000 bond"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    same_snapshot p "$W/before" "ports back to MTU 9000"
}

# mtu omitted: the bond takes the smallest port MTU, never an assumed 1500.
t_mtu_omitted() {
    pod p
    switch sw "$GW/24"
    vf p net1 sw pp1 9000
    vf p net2 sw pp2 1450
    snapshot p >"$W/before"
    bondconf "$W/c.json" active-backup true "net1 net2"
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    assert_bond p bond0 active-backup "net1 net2"
    [ "$(mtu p bond0)" = 1450 ] || fail "bond0 MTU is $(mtu p bond0), smallest port MTU is 1450"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    same_snapshot p "$W/before" "ports back to MTU 9000/1450"
}

# In balance-xor the kernel gives every port the bond's MAC; DEL restores each port's own
# MAC, MTU and admin state (one up, one down before ADD).
t_restore() {
    pair_pod p sw "$GW/24"
    must $IP -n p link set net1 address 02:11:22:33:44:01 mtu 1400
    must $IP -n p link set net2 address 02:11:22:33:44:02 mtu 1500
    must $IP -n p link set net1 up
    snapshot p >"$W/before"
    bondconf "$W/c.json" balance-xor true "net1 net2" '{"mtu": 1300}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    assert_bond p bond0 balance-xor "net1 net2"
    [ "$(mac p net1)" = "$(mac p bond0)" ] && [ "$(mac p net2)" = "$(mac p bond0)" ] ||
        fail "balance-xor ports should share the bond MAC $(mac p bond0): $(mac p net1) $(mac p net2)"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    same_snapshot p "$W/before" "MACs, MTU and admin state restored"
}

t_del_twice() {
    pair_pod p sw "$GW/24"
    snapshot p >"$W/before"
    bondconf "$W/c.json" balance-alb true "net1 net2"
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    assert_bond p bond0 balance-alb "net1 net2"
    cni DEL p bond0 "$W/c.json"
    expect_ok "first DEL"
    cni DEL p bond0 "$W/c.json"
    expect_ok "second DEL"
    same_snapshot p "$W/before" "after two DELs"
    assert_ipam_empty "after two DELs"
}

# DEL when part of what it would undo is already gone: a port deleted (true), the bond
# deleted behind the plugin's back (false: the host links still come home, named as before).
t_del_partly_gone() {
    local m1 m2
    pair_pod p sw "$GW/24"
    bondconf "$W/c.json" active-backup true "net1 net2"
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD (true)"
    must $IP -n p link del net2
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL with port net2 gone"
    assert_released p bond0 "net1"
    assert_ipam_empty "DEL with a port gone"

    pod q
    vf host hvf1 sw sq1
    vf host hvf2 sw sq2
    m1=$(mac host hvf1)
    m2=$(mac host hvf2)
    snapshot host >"$W/host.before"
    bondconf "$W/f.json" balance-xor false "hvf1 hvf2"
    cni ADD q bond0 "$W/f.json" cid-q
    expect_ok "ADD (false)"
    must $IP -n q link del bond0
    cni DEL q bond0 "$W/f.json" cid-q
    expect_ok "DEL with the bond already deleted"
    has_link host hvf1 && has_link host hvf2 ||
        fail "the host links did not come back: host has [$(links host | cut -d' ' -f1 | tr '\n' ' ')], pod has [$(links q | cut -d' ' -f1 | tr '\n' ' ')]"
    same_snapshot host "$W/host.before" "host links back with their MACs ($m1, $m2), MTU and state"
    assert_ipam_empty "DEL with the bond gone"
}

# The pod's netns is deleted before DEL (true and false); DEL still succeeds and releases
# the address. With an empty CNI_NETNS too.
t_del_netns_gone() {
    pair_pod p sw "$GW/24"
    bondconf "$W/c.json" active-backup true "net1 net2"
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD (true)"
    [ "$(ipam_allocs "$NET")" -eq 1 ] || fail "host-local holds $(ipam_allocs "$NET") addresses after ADD"
    must $IP netns del p
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL with the netns gone (linksInContainer true)"
    assert_ipam_empty "DEL with the netns gone"

    pod q
    vf host hvf1 sw sq1
    vf host hvf2 sw sq2
    bondconf "$W/f.json" active-backup false "hvf1 hvf2"
    cni ADD q bond0 "$W/f.json"
    expect_ok "ADD (false)"
    must $IP netns del q
    cni DEL q bond0 "$W/f.json"
    expect_ok "DEL with the netns gone (linksInContainer false)"
    assert_ipam_empty "DEL with the netns gone (false)"
    cni DEL - bond0 "$W/f.json"
    expect_ok "DEL with an empty CNI_NETNS"
}

t_check_good() {
    pair_pod p sw "$GW/24"
    bondconf "$W/c.json" active-backup true "net1 net2" '{"failOverMac": 1, "primary": "net2"}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    with_prev "$W/c.json" "$OUT" "$W/check.json"
    cni CHECK p bond0 "$W/check.json"
    expect_ok "CHECK on a good bond"
    cni DEL p bond0 "$W/check.json"
    expect_ok "DEL with prevResult"
    assert_released p bond0 "net1 net2"
}

# A port is taken out of the bond behind the plugin's back: CHECK names it.
t_check_removed() {
    pair_pod p sw "$GW/24"
    bondconf "$W/c.json" active-backup true "net1 net2" '{"failOverMac": 1}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    with_prev "$W/c.json" "$OUT" "$W/check.json"
    must $IP -n p link set net2 nomaster
    cni CHECK p bond0 "$W/check.json"
    expect_err "CHECK after net2 left the bond"
    err_text | grep -q net2 || fail "CHECK's error does not name net2: $OUT"
    # And a mode changed behind its back: a different bond under the same name.
    cni DEL p bond0 "$W/check.json"
    expect_ok "DEL"
    must $IP -n p link add bond0 type bond mode balance-rr
    cni CHECK p bond0 "$W/check.json"
    expect_err "CHECK on a balance-rr bond0 that should be active-backup"
    err_text | grep -qF "mode: want active-backup, kernel has balance-rr" ||
        fail "CHECK's error does not say 'mode: want active-backup, kernel has balance-rr': $OUT"
}

# CHECK notices drift after ADD: the bond's MTU changed, its address removed.
t_check_drift() {
    local a
    pair_pod p sw "$GW/24"
    bondconf "$W/c.json" balance-xor true "net1 net2" '{"mtu": 1450}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    a=$(jout '.ips[0].address')
    with_prev "$W/c.json" "$OUT" "$W/check.json"
    cni CHECK p bond0 "$W/check.json"
    expect_ok "CHECK right after ADD"
    must $IP -n p link set bond0 mtu 1400
    cni CHECK p bond0 "$W/check.json"
    expect_err "CHECK with bond0's MTU changed to 1400"
    err_text | grep -qi mtu || fail "CHECK's error does not mention the MTU: $OUT"
    must $IP -n p link set bond0 mtu 1450
    cni CHECK p bond0 "$W/check.json"
    expect_ok "CHECK with the MTU put back"
    must $IP -n p addr del "$a" dev bond0
    cni CHECK p bond0 "$W/check.json"
    expect_err "CHECK with bond0's address removed"
    err_text | grep -q "${a%/*}" || fail "CHECK's error does not name the address ${a%/*}: $OUT"
    cni DEL p bond0 "$W/check.json"
    expect_ok "DEL"
}

# Dual-stack host-local (an IPv4 and an IPv6 range) over three ports.
t_ipam_dual_stack() {
    local n
    pair_pod p sw "$GW/24"
    vf p net3 sw pp3
    must $IP -n sw addr add fd00:10::1/64 dev br0 nodad
    bondconf "$W/c.json" balance-xor true "net1 net2 net3" \
        '{"ipam": {"subnet": null, "gateway": null, "rangeStart": null, "rangeEnd": null,
                   "ranges": [[{"subnet": "10.10.0.0/24", "gateway": "10.10.0.1"}],
                              [{"subnet": "fd00:10::/64", "gateway": "fd00:10::1"}]],
                   "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}'
    jq -M 'del(.ipam.subnet, .ipam.gateway, .ipam.rangeStart, .ipam.rangeEnd)' "$W/c.json" >"$W/d.json"
    cni ADD p bond0 "$W/d.json"
    expect_ok "ADD dual-stack"
    assert_bond p bond0 balance-xor "net1 net2 net3"
    n=$(jout '[.ips[] | select(.interface == 0)] | length')
    [ "$n" = 2 ] || fail "the result has $n addresses on bond0, expected an IPv4 and an IPv6 one: $OUT"
    [ "$(addrs p bond0)" = "$(jout '[.ips[].address] | sort | join(" ")')" ] ||
        fail "bond0 has '$(addrs p bond0)', the result says $(jout '[.ips[].address] | join(" ")')"
    ipn p -6 route show default | grep -q 'via fd00:10::1 dev bond0' ||
        fail "no IPv6 default route via fd00:10::1: $(ipn p -6 route show | tr '\n' ';')"
    ipn p route show default | grep -q 'via 10.10.0.1 dev bond0' || fail "no IPv4 default route via 10.10.0.1"
    ping_ok p "$GW" || fail "no IPv4 ping reply"
    cni DEL p bond0 "$W/d.json"
    expect_ok "DEL"
    assert_released p bond0 "net1 net2 net3"
    assert_ipam_empty "after DEL"
}

# A runtime that names the netns by a process (/proc/PID/ns/net) instead of a bind mount.
t_netns_proc_path() {
    local pid nsp n
    pair_pod p sw "$GW/24"
    $IP netns exec p sleep 300 </dev/null >/dev/null 2>&1 &
    pid=$!
    wait_for 5 sh -c "[ \"\$(readlink /proc/$pid/ns/net)\" != \"\$(readlink /proc/self/ns/net)\" ]" ||
        fail "the sleeper did not enter the pod netns"
    nsp="/proc/$pid/ns/net"
    bondconf "$W/c.json" active-backup true "net1 net2"
    cni ADD "$nsp" bond0 "$W/c.json" cid-proc
    expect_ok "ADD with CNI_NETNS=$nsp"
    assert_bond p bond0 active-backup "net1 net2"
    n=$(jout --arg s "$nsp" '[.interfaces[] | select(.sandbox == $s)] | length')
    [ "$n" = 3 ] || fail "the result's sandboxes are not $nsp: $OUT"
    ping_ok p "$GW" || fail "no ping reply"
    cni DEL "$nsp" bond0 "$W/c.json" cid-proc
    expect_ok "DEL with CNI_NETNS=$nsp"
    assert_released p bond0 "net1 net2"
    kill "$pid" 2>/dev/null
    assert_ipam_empty "after DEL"
}

# host-local from Debian's containernetworking-plugins: address, gateway route, ping.
t_ipam_host_local() {
    local a
    pair_pod p sw "10.56.217.1/24"
    cat >"$W/c.json" <<EOF
{"cniVersion": "1.0.0", "name": "$NET", "type": "bond", "mode": "active-backup",
 "failOverMac": 1, "linksInContainer": true, "miimon": "100",
 "links": [{"name": "net1"}, {"name": "net2"}],
 "ipam": {"type": "host-local", "subnet": "10.56.217.0/24", "gateway": "10.56.217.1",
          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.60.0.0/16", "gw": "10.56.217.254"}]}}
EOF
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    a=$(jout '.ips[0].address')
    case "$a" in 10.56.217.*/24) ;; *) fail "no 10.56.217.x/24 in the result: $OUT" ;; esac
    [ "$(addrs p bond0)" = "$a" ] || fail "bond0 has '$(addrs p bond0)', result says $a"
    [ "$(jout '.ips[0].gateway')" = 10.56.217.1 ] || fail "result gateway is not 10.56.217.1: $OUT"
    ipn p route show default | grep -q 'via 10.56.217.1 dev bond0' ||
        fail "no default route via 10.56.217.1 on bond0: $(ipn p route show | tr '\n' ';')"
    ipn p route show 10.60.0.0/16 | grep -q 'via 10.56.217.254 dev bond0' ||
        fail "no route to 10.60.0.0/16 via 10.56.217.254: $(ipn p route show | tr '\n' ';')"
    [ "$(ipam_allocs "$NET")" -eq 1 ] || fail "host-local holds $(ipam_allocs "$NET") addresses"
    grep -qx "${a%/*}" "$IPAM_DIR/$NET/last_reserved_ip.0" 2>/dev/null || [ -e "$IPAM_DIR/$NET/${a%/*}" ] ||
        fail "host-local has no reservation for $a"
    ping_ok p 10.56.217.1 || fail "no ping reply from the gateway"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    assert_ipam_empty "after DEL"
}

# static IPAM: two addresses, a route and DNS from the IPAM config.
t_ipam_static() {
    pair_pod p sw "10.7.0.1/24"
    cat >"$W/c.json" <<EOF
{"cniVersion": "1.0.0", "name": "$NET", "type": "bond", "mode": "balance-tlb",
 "linksInContainer": true, "miimon": 100, "links": [{"name": "net1"}, {"name": "net2"}],
 "ipam": {"type": "static",
          "addresses": [{"address": "10.7.0.5/24", "gateway": "10.7.0.1"},
                        {"address": "fd00:7::5/64"}],
          "routes": [{"dst": "10.70.0.0/16", "gw": "10.7.0.1"}],
          "dns": {"nameservers": ["10.7.0.53"], "search": ["example.test"]}}}
EOF
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    assert_bond p bond0 balance-tlb "net1 net2"
    [ "$(addrs p bond0)" = "10.7.0.5/24 fd00:7::5/64" ] || fail "bond0 has '$(addrs p bond0)'"
    ipn p route show 10.70.0.0/16 | grep -q 'via 10.7.0.1 dev bond0' ||
        fail "no route to 10.70.0.0/16 via 10.7.0.1: $(ipn p route show | tr '\n' ';')"
    [ "$(jout '.dns.nameservers[0]')" = 10.7.0.53 ] || fail "result has no DNS from IPAM: $OUT"
    ping_ok p 10.7.0.1 || fail "no ping reply from 10.7.0.1"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    assert_released p bond0 "net1 net2"
}

# IPAM fails (no subnet): ADD fails with CNI error JSON and the pod is as before.
t_rollback_ipam_config() {
    pair_pod p sw "$GW/24"
    must $IP -n p link set net2 up
    snapshot p >"$W/before"
    snapshot host >"$W/host.before"
    cat >"$W/c.json" <<EOF
{"cniVersion": "1.0.0", "name": "$NET", "type": "bond", "mode": "active-backup",
 "linksInContainer": true, "miimon": "100", "links": [{"name": "net1"}, {"name": "net2"}],
 "ipam": {"type": "host-local", "gateway": "10.10.0.1"}}
EOF
    cni ADD p bond0 "$W/c.json"
    expect_err "ADD with an IPAM config host-local refuses"
    same_snapshot p "$W/before" "failed ADD must leave the pod as it was"
    same_snapshot host "$W/host.before" "failed ADD must leave the host as it was"
}

# IPAM fails (range exhausted) with linksInContainer false: the host links come back.
t_rollback_ipam_exhausted() {
    local one='{"ipam": {"rangeStart": "10.10.0.10", "rangeEnd": "10.10.0.10"}}'
    pair_pod a sw "$GW/24"
    bondconf "$W/a.json" active-backup true "net1 net2" "$one"
    cni ADD a bond0 "$W/a.json" cid-a
    expect_ok "ADD of the pod that takes the only address"
    pod b
    vf host hvf1 sw sb1
    vf host hvf2 sw sb2
    must $IP link set hvf2 mtu 1400
    must $IP link set hvf2 up
    snapshot host >"$W/host.before"
    snapshot b >"$W/b.before"
    bondconf "$W/b.json" balance-xor false "hvf1 hvf2" "$one"
    cni ADD b bond0 "$W/b.json" cid-b
    expect_err "ADD with the range exhausted"
    same_snapshot host "$W/host.before" "host links back after the failed ADD"
    same_snapshot b "$W/b.before" "pod b after the failed ADD"
    [ "$(ipam_allocs "$NET")" -eq 1 ] || fail "host-local holds $(ipam_allocs "$NET") addresses, expected pod a's only"
    cni DEL a bond0 "$W/a.json" cid-a
    expect_ok "DEL a"
}

# linksInContainer false, and the pod already has a link named like the second host link:
# moving it fails (or is refused up front); the first link must come home.
t_rollback_name_taken() {
    pod p
    switch sw "$GW/24"
    vf host hvf1 sw s1
    vf host hvf2 sw s2
    must $IP link set hvf1 up
    must $IP -n p link add hvf2 type dummy
    snapshot host >"$W/host.before"
    snapshot p >"$W/pod.before"
    bondconf "$W/c.json" active-backup false "hvf1 hvf2"
    cni ADD p bond0 "$W/c.json"
    expect_err "ADD when the pod already has a link named hvf2"
    err_text | grep -q hvf2 || fail "the error does not name hvf2: $OUT"
    same_snapshot host "$W/host.before" "host links after the failed ADD"
    same_snapshot p "$W/pod.before" "pod after the failed ADD"
    assert_ipam_empty "failed ADD"
}

# Eight pods at once, each bonding two host links of its own (linksInContainer false):
# the moves between namespaces run concurrently; every link comes home on DEL.
t_concurrent_host_links() {
    local i
    switch sw "$GW/24"
    : >"$W/setup.host"
    : >"$W/setup.sw"
    i=1
    while [ $i -le 8 ]; do
        {
            echo "netns add h$i"
            echo "link add name h${i}a type veth peer name s${i}a netns sw"
            echo "link add name h${i}b type veth peer name s${i}b netns sw"
        } >>"$W/setup.host"
        for e in a b; do
            echo "link set s${i}$e master br0"
            echo "link set s${i}$e up"
        done >>"$W/setup.sw"
        i=$((i + 1))
    done
    must $IP -batch "$W/setup.host"
    must $IP -n sw -batch "$W/setup.sw"
    snapshot host >"$W/host.before"
    i=1
    while [ $i -le 8 ]; do
        bondconf "$W/c$i.json" balance-xor false "h${i}a h${i}b"
        i=$((i + 1))
    done
    for cmd in ADD DEL; do
        i=1
        while [ $i -le 8 ]; do
            (CNI_COMMAND=$cmd CNI_CONTAINERID="cid-h$i" CNI_NETNS="$NETNS_DIR/h$i" CNI_IFNAME=bond0 \
                CNI_PATH=$CNI_BIN timeout 120 $BOND <"$W/c$i.json" >"$W/$cmd$i.out" 2>"$W/$cmd$i.err"
            echo $? >"$W/$cmd$i.rc") &
            i=$((i + 1))
        done
        wait
        i=1
        while [ $i -le 8 ]; do
            note "h$i $cmd: exit $(cat "$W/$cmd$i.rc") $(cat "$W/$cmd$i.out") $(head -c 300 "$W/$cmd$i.err")"
            [ "$(cat "$W/$cmd$i.rc")" = 0 ] || fail "$cmd h$i failed: exit $(cat "$W/$cmd$i.rc"): $(cat "$W/$cmd$i.out")"
            if [ $cmd = ADD ]; then
                assert_bond "h$i" bond0 balance-xor "h${i}a h${i}b"
            fi
            i=$((i + 1))
        done
        if [ $cmd = ADD ]; then
            [ -z "$(links host | grep '^h[0-9]')" ] || fail "host links left on the host: $(links host | grep '^h[0-9]' | tr '\n' ';')"
            [ "$(ipam_allocs "$NET")" -eq 8 ] || fail "host-local holds $(ipam_allocs "$NET") addresses for 8 pods"
        fi
    done
    same_snapshot host "$W/host.before" "all 16 host links back after 8 concurrent DELs"
    assert_ipam_empty "after 8 DELs"
}

# A second ADD for the same ifname in the same pod (another attachment, or a runtime's
# retry) fails, and its rollback leaves the first bond and its address alone.
t_add_existing_ifname() {
    local a
    pair_pod p sw "$GW/24"
    vf p net3 sw pp3
    vf p net4 sw pp4
    bondconf "$W/c.json" active-backup true "net1 net2"
    cni ADD p bond0 "$W/c.json" cid-1
    expect_ok "first ADD"
    a=$(jout '.ips[0].address')
    snapshot p >"$W/before"
    bondconf "$W/d.json" balance-xor true "net3 net4"
    cni ADD p bond0 "$W/d.json" cid-2
    expect_err "second ADD for bond0 in the same pod"
    err_text | grep -q bond0 || fail "the error does not name bond0: $OUT"
    same_snapshot p "$W/before" "the first bond, its ports and address survive the failed ADD"
    [ "$(addrs p bond0)" = "$a" ] || fail "bond0 lost its address $a"
    [ "$(ipam_allocs "$NET")" -eq 1 ] || fail "host-local holds $(ipam_allocs "$NET") addresses, expected the first ADD's only"
    cni DEL p bond0 "$W/c.json" cid-1
    expect_ok "DEL of the first"
    assert_released p bond0 "net1 net2"
}

# Two bond attachments in one pod (two bond NADs): DEL of one leaves the other whole.
t_two_bonds() {
    pair_pod p sw "$GW/24"
    vf p net3 sw pp3
    vf p net4 sw pp4
    bondconf "$W/a.json" active-backup true "net1 net2"
    bondconf "$W/b.json" balance-xor true "net3 net4"
    cni ADD p bond0 "$W/a.json" cid-p
    expect_ok "ADD bond0"
    cni ADD p bond1 "$W/b.json" cid-p
    expect_ok "ADD bond1"
    assert_bond p bond0 active-backup "net1 net2"
    assert_bond p bond1 balance-xor "net3 net4"
    [ "$(ipam_allocs "$NET")" -eq 2 ] || fail "host-local holds $(ipam_allocs "$NET") addresses for two bonds"
    { links p | grep -e '^bond1 ' -e '^net3 ' -e '^net4 '; addrs p bond1; } >"$W/bond1.before"
    cni DEL p bond0 "$W/a.json" cid-p
    expect_ok "DEL bond0"
    assert_released p bond0 "net1 net2"
    { links p | grep -e '^bond1 ' -e '^net3 ' -e '^net4 '; addrs p bond1; } >"$W/bond1.after"
    cmp -s "$W/bond1.before" "$W/bond1.after" ||
        fail "DEL of bond0 changed bond1: was [$(tr '\n' ';' <"$W/bond1.before")] now [$(tr '\n' ';' <"$W/bond1.after")]"
    [ "$(ipam_allocs "$NET")" -eq 1 ] || fail "host-local holds $(ipam_allocs "$NET") addresses, expected bond1's only"
    cni DEL p bond1 "$W/b.json" cid-p
    expect_ok "DEL bond1"
    assert_released p bond1 "net3 net4"
    assert_ipam_empty "after both DELs"
}

# Protocol errors reach the runtime with the spec's codes, and change nothing.
t_protocol_errors() {
    pair_pod p sw
    snapshot p >"$W/before"
    echo 'this is not json' >"$W/bad.json"
    cni ADD p bond0 "$W/bad.json"
    expect_err "ADD with a config that is not JSON" 6
    bondconf "$W/v.json" active-backup true "net1 net2" '{"cniVersion": "9.9.9"}'
    cni ADD p bond0 "$W/v.json"
    expect_err "ADD with cniVersion 9.9.9" 1
    bondconf "$W/c.json" active-backup true "net1 net2"
    cni ADD - bond0 "$W/c.json"
    expect_err "ADD without CNI_NETNS" 4
    cni ADD p "" "$W/c.json"
    expect_err "ADD without CNI_IFNAME" 4
    same_snapshot p "$W/before" "refused calls change nothing"
    assert_ipam_empty "refused calls allocate nothing"
}

# logFile/logLevel: the logs go to the file, stdout carries only the result.
t_log_file() {
    pair_pod p sw "$GW/24"
    bondconf "$W/c.json" active-backup true "net1 net2" "{\"logFile\": \"$W/plugin.log\", \"logLevel\": \"debug\"}"
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD with logFile"
    [ "$(jout '.interfaces[0].name')" = bond0 ] || fail "stdout is not just the result: $OUT"
    [ -s "$W/plugin.log" ] || fail "logFile $W/plugin.log is empty or missing"
    grep -q bond0 "$W/plugin.log" || fail "the debug log does not mention bond0: $(head -c 300 "$W/plugin.log")"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    assert_released p bond0 "net1 net2"
}

# STATUS (1.1.0) passes while the bonding driver is there and fails, saying so, when it
# is not (rmmod'ed, and not in this guest's module tree).
t_status() {
    bondconf "$W/c.json" active-backup true "net1 net2" '{"cniVersion": "1.1.0", "ipam": null}'
    cni STATUS - "" "$W/c.json" ""
    expect_ok "STATUS with bonding loaded"
    must rmmod bonding
    cni STATUS - "" "$W/c.json" ""
    insmod /lib/modules/bonding.ko max_bonds=0 >>"$W/log" 2>&1 || fail "cannot load bonding.ko again"
    expect_err "STATUS without the bonding driver"
    err_text | grep -qi bonding || fail "STATUS's error does not mention bonding: $OUT"
    cni STATUS - "" "$W/c.json" ""
    expect_ok "STATUS with bonding loaded again"
}

# GC (1.1.0): attachments not in cni.dev/valid-attachments lose their saved state; the
# valid one keeps it and its bond; DEL still works after GC.
t_gc() {
    local st="$W/state"
    pair_pod a sw "$GW/24"
    pod b
    vf b net1 sw pb1
    vf b net2 sw pb2
    bondconf "$W/c.json" active-backup true "net1 net2" "{\"cniVersion\": \"1.1.0\", \"ipam\": null, \"stateDir\": \"$st\"}"
    cni ADD a bond0 "$W/c.json" cid-a
    expect_ok "ADD a"
    cni ADD b bond0 "$W/c.json" cid-b
    expect_ok "ADD b"
    [ "$(ls "$st" | grep -c .)" -eq 2 ] || fail "expected 2 saved states in $st: $(ls "$st")"
    jq -M '. + {"cni.dev/valid-attachments": [{"containerID": "cid-a", "ifname": "bond0"}]}' "$W/c.json" >"$W/gc.json"
    cni GC - "" "$W/gc.json" ""
    expect_ok "GC keeping cid-a"
    [ "$(ls "$st" | tr '\n' ' ')" = "cid-a@bond0.json " ] || fail "after GC the state dir holds: $(ls "$st" | tr '\n' ' ')"
    assert_bond a bond0 active-backup "net1 net2"
    cni DEL b bond0 "$W/c.json" cid-b
    expect_ok "DEL b after GC dropped its state"
    assert_released b bond0 "net1 net2"
    cni DEL a bond0 "$W/c.json" cid-a
    expect_ok "DEL a"
    assert_released a bond0 "net1 net2"
}

# An unknown mode: code 7 (invalid network config), nothing touched.
t_bad_mode() {
    pair_pod p sw
    snapshot p >"$W/before"
    bondconf "$W/c.json" round-robin-please true "net1 net2"
    cni ADD p bond0 "$W/c.json"
    expect_err "ADD with mode round-robin-please" 7
    err_text | grep -qi mode || fail "the error does not name the mode field: $OUT"
    same_snapshot p "$W/before" "a refused config changes nothing"
    assert_ipam_empty "a refused config allocates nothing"
}

# Sixteen pods added at once (Multus starts many), then deleted at once.
t_concurrent() {
    local i n ips a t0
    switch sw "$GW/24"
    bondconf "$W/c.json" active-backup true "net1 net2" '{"failOverMac": 1}'
    # Two ip -batch runs instead of ~130 ip processes.
    : >"$W/setup.host"
    : >"$W/setup.sw"
    i=1
    while [ $i -le 16 ]; do
        {
            echo "netns add c$i"
            echo "link add name net1 netns c$i type veth peer name c${i}a netns sw"
            echo "link add name net2 netns c$i type veth peer name c${i}b netns sw"
        } >>"$W/setup.host"
        for e in a b; do
            echo "link set c${i}$e master br0"
            echo "link set c${i}$e up"
        done >>"$W/setup.sw"
        i=$((i + 1))
    done
    must $IP -batch "$W/setup.host"
    must $IP -n sw -batch "$W/setup.sw"
    note "== 16 ADDs at once"
    t0=$(cut -d' ' -f1 /proc/uptime)
    i=1
    while [ $i -le 16 ]; do
        (CNI_COMMAND=ADD CNI_CONTAINERID="cid-c$i" CNI_NETNS="$NETNS_DIR/c$i" CNI_IFNAME=bond0 \
            CNI_PATH=$CNI_BIN timeout 120 $BOND <"$W/c.json" >"$W/add$i.out" 2>"$W/add$i.err"
        echo $? >"$W/add$i.rc") &
        i=$((i + 1))
    done
    wait
    note "16 ADDs took $(awk -v t0="$t0" '{ printf "%.1f s", $1 - t0 }' /proc/uptime)"
    i=1
    while [ $i -le 16 ]; do
        note "c$i: exit $(cat "$W/add$i.rc") $(cat "$W/add$i.out") $(head -c 500 "$W/add$i.err")"
        [ "$(cat "$W/add$i.rc")" = 0 ] || fail "ADD c$i failed: exit $(cat "$W/add$i.rc"): $(cat "$W/add$i.out")"
        i=$((i + 1))
    done
    # One jq for all sixteen results: "c<i> <address>" lines.
    jq -M -r '"\(input_filename | sub(".*/add"; "c") | sub("[.]out$"; "")) \(.ips[0].address)"' \
        "$W"/add*.out >"$W/results" || fail "the ADD results are not JSON"
    i=1
    while [ $i -le 16 ]; do
        assert_bond "c$i" bond0 active-backup "net1 net2"
        a=$(awk -v p="c$i" '$1 == p { print $2 }' "$W/results")
        echo "$a" >>"$W/ips"
        [ "$(addrs "c$i" bond0)" = "$a" ] || fail "c$i bond0 has '$(addrs "c$i" bond0)', result says $a"
        i=$((i + 1))
    done
    ips=$(sort -u "$W/ips" | grep -c .)
    [ "$ips" -eq 16 ] || fail "16 pods got $ips distinct addresses: $(tr '\n' ' ' <"$W/ips")"
    ping_ok c16 "$GW" || fail "no ping reply from pod c16"
    note "== 16 DELs at once"
    i=1
    while [ $i -le 16 ]; do
        (CNI_COMMAND=DEL CNI_CONTAINERID="cid-c$i" CNI_NETNS="$NETNS_DIR/c$i" CNI_IFNAME=bond0 \
            CNI_PATH=$CNI_BIN timeout 120 $BOND <"$W/c.json" >"$W/del$i.out" 2>"$W/del$i.err"
        echo $? >"$W/del$i.rc") &
        i=$((i + 1))
    done
    wait
    i=1
    while [ $i -le 16 ]; do
        [ "$(cat "$W/del$i.rc")" = 0 ] || fail "DEL c$i failed: exit $(cat "$W/del$i.rc"): $(cat "$W/del$i.out")"
        assert_released "c$i" bond0 "net1 net2"
        i=$((i + 1))
    done
    n=$(ipam_allocs "$NET")
    [ "$n" -eq 0 ] || fail "host-local still holds $n addresses after 16 DELs"
}

# Every CNI version the plugin speaks: the result is shaped for the config's version
# (0.3.x and 0.4.0 carry ips[].version, 1.x does not). Debian's host-local stops at 1.0.0,
# so 1.1.0 runs without IPAM (ipam is optional): the result lists the interfaces only.
t_versions() {
    local v got
    pair_pod p sw "$GW/24"
    for v in 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0; do
        if [ "$v" = 1.1.0 ]; then
            bondconf "$W/c.json" active-backup true "net1 net2" "{\"cniVersion\": \"$v\", \"ipam\": null}"
        else
            bondconf "$W/c.json" active-backup true "net1 net2" "{\"cniVersion\": \"$v\"}"
        fi
        cni ADD p bond0 "$W/c.json" "cid-$v"
        expect_ok "ADD with cniVersion $v"
        got=$(jout '"\(.cniVersion) \(.ips[0].version // "none") \(if ((.ips // []) | length) > 0 then .interfaces[.ips[0].interface].name else "noip" end) \([.interfaces[].name] | sort | join(","))"')
        case "$v" in
        0.*) want="$v 4 bond0 bond0,net1,net2" ;;
        1.0.0) want="$v none bond0 bond0,net1,net2" ;;
        *) want="$v none noip bond0,net1,net2" ;;
        esac
        [ "$got" = "$want" ] ||
            fail "cniVersion $v: result should read '$want' (version, ips[0].version, its interface, interfaces), got '$got': $OUT"
        assert_bond p bond0 active-backup "net1 net2"
        [ "$v" != 1.1.0 ] || [ -z "$(addrs p bond0)" ] || fail "bond0 has addresses without IPAM: $(addrs p bond0)"
        cni DEL p bond0 "$W/c.json" "cid-$v"
        expect_ok "DEL with cniVersion $v"
        assert_released p bond0 "net1 net2"
    done
    assert_ipam_empty "after the DELs"
}

# A mode given as its number (upstream accepts 0 to 6).
t_mode_number() {
    pair_pod p sw "$GW/24"
    bondconf "$W/c.json" x true "net1 net2" '{"mode": 6}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD with mode 6"
    assert_bond p bond0 balance-alb "net1 net2"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    assert_released p bond0 "net1 net2"
}

# Active-backup options: primary (and so the active port), reselect, delays, peer notifs.
t_opts_active_backup() {
    pair_pod p sw "$GW/24"
    bondconf "$W/c.json" active-backup true "net1 net2" \
        '{"failOverMac": "follow", "primary": "net2", "primaryReselect": "better",
          "updelay": 200, "downdelay": "300", "numPeerNotif": 3, "resendIgmp": 5}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    assert_bond p bond0 active-backup "net1 net2"
    assert_opts p bond0 "miimon 100 fail_over_mac follow primary net2 primary_reselect better updelay 200 downdelay 300 num_grat_arp 3 resend_igmp 5"
    wait_for 5 sh -c "$IP netns exec p cat /proc/net/bonding/bond0 | grep -qx 'Currently Active Slave: net2'" ||
        fail "the primary net2 is not the active port: $(bonding_proc p bond0 | tr '\n' ';')"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    assert_released p bond0 "net1 net2"
}

# 802.3ad options reach the kernel.
t_opts_lacp() {
    pair_pod p sw "$GW/24"
    bondconf "$W/c.json" 802.3ad true "net1 net2" \
        '{"lacpRate": 1, "adSelect": "bandwidth", "minLinks": 1, "xmitHashPolicy": "layer2+3"}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    assert_bond p bond0 802.3ad "net1 net2"
    assert_opts p bond0 "lacp_rate fast ad_select bandwidth min_links 1 xmit_hash_policy layer2+3"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    assert_released p bond0 "net1 net2"
}

# ARP monitoring instead of miimon: targets, validation; the bond passes traffic with it.
t_opts_arp() {
    pair_pod p sw "$GW/24"
    bondconf "$W/c.json" active-backup true "net1 net2" \
        '{"miimon": null, "arpInterval": 200, "arpIpTargets": ["10.10.0.1", "10.10.0.2"],
          "arpValidate": "active", "arpAllTargets": "any", "failOverMac": 1}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD"
    assert_bond p bond0 active-backup "net1 net2"
    assert_opts p bond0 "miimon 0 arp_interval 200 arp_ip_target 10.10.0.1,10.10.0.2 arp_validate active arp_all_targets any"
    ping_ok p "$GW" || fail "no ping reply over an ARP-monitored bond"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    assert_released p bond0 "net1 net2"
}

# balance-rr and balance-tlb options.
t_opts_rr_tlb() {
    pair_pod p sw "$GW/24"
    bondconf "$W/c.json" balance-rr true "net1 net2" '{"packetsPerSlave": 3, "allSlavesActive": 1}'
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD balance-rr"
    assert_opts p bond0 "mode balance-rr packets_per_slave 3 all_slaves_active 1"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL balance-rr"
    assert_released p bond0 "net1 net2"
    bondconf "$W/t.json" balance-tlb true "net1 net2" '{"tlbDynamicLb": false, "lpInterval": 2}'
    cni ADD p bond0 "$W/t.json"
    expect_ok "ADD balance-tlb"
    assert_opts p bond0 "mode balance-tlb tlb_dynamic_lb 0 lp_interval 2"
    cni DEL p bond0 "$W/t.json"
    expect_ok "DEL balance-tlb"
    assert_released p bond0 "net1 net2"
}

# An option the mode does not use is refused, naming the mode it needs; nothing changes.
t_opt_wrong_mode() {
    pair_pod p sw
    snapshot p >"$W/before"
    bondconf "$W/c.json" active-backup true "net1 net2" '{"lacpRate": "fast"}'
    cni ADD p bond0 "$W/c.json"
    expect_err "ADD with lacpRate on an active-backup bond" 7
    err_text | grep -q 802.3ad || fail "the error does not say lacpRate needs 802.3ad: $OUT"
    same_snapshot p "$W/before" "a refused config changes nothing"
}

# Two ports with one MAC in balance-alb: fixed with a locally administered unicast MAC
# (or refused with an error that says so); DEL gives both their MAC back.
t_dup_mac() {
    local m1 m2 first
    pair_pod p sw "$GW/24"
    must $IP -n p link set net1 address 02:aa:bb:cc:dd:01
    must $IP -n p link set net2 address 02:aa:bb:cc:dd:01
    snapshot p >"$W/before"
    bondconf "$W/c.json" balance-alb true "net1 net2"
    cni ADD p bond0 "$W/c.json"
    if [ "$RC" -ne 0 ]; then
        expect_err "ADD over ports with one MAC"
        err_text | grep -qi mac || fail "the refusal does not mention the MAC: $OUT"
        same_snapshot p "$W/before" "refused ADD"
        return 0
    fi
    expect_ok "ADD"
    assert_bond p bond0 balance-alb "net1 net2"
    m1=$(mac p net1)
    m2=$(mac p net2)
    [ "$m1" != "$m2" ] || fail "balance-alb ports still share MAC $m1"
    for m in $m1 $m2; do
        first=$((0x${m%%:*}))
        [ $((first & 1)) -eq 0 ] || fail "port MAC $m is a multicast address"
        case "$m" in *[!0-9a-f:]*) fail "port MAC '$m' is not hex" ;; esac
        [ ${#m} -eq 17 ] || fail "port MAC '$m' is not 6 bytes"
        [ "$m" = 02:aa:bb:cc:dd:01 ] || [ $((first & 2)) -eq 2 ] ||
            fail "the replacement MAC $m is not locally administered"
    done
    ping_ok p "$GW" || fail "no ping reply over the alb bond"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    same_snapshot p "$W/before" "both ports back to their MAC"
}

# ADD naming a link that does not exist: an error naming it, the other port untouched.
t_rollback_missing_link() {
    pair_pod p sw "$GW/24"
    must $IP -n p link set net1 up
    snapshot p >"$W/before"
    bondconf "$W/c.json" active-backup true "net1 nosuch0"
    cni ADD p bond0 "$W/c.json"
    expect_err "ADD with a link that does not exist"
    err_text | grep -q nosuch0 || fail "the error does not name nosuch0: $OUT"
    same_snapshot p "$W/before" "failed ADD"
    assert_ipam_empty "failed ADD"
}

# A port that already belongs to another bond: refused or rolled back, the other bond
# keeps its port; in the pod and on the host.
t_rollback_busy_port() {
    pair_pod p sw "$GW/24"
    must $IP -n p link add other type bond mode active-backup
    must $IP -n p link set net2 master other
    snapshot p >"$W/before"
    bondconf "$W/c.json" active-backup true "net1 net2"
    cni ADD p bond0 "$W/c.json"
    expect_err "ADD with net2 already a port of bond 'other'"
    err_text | grep -q net2 || fail "the error does not name net2: $OUT"
    same_snapshot p "$W/before" "failed ADD in the pod"

    pod q
    vf host hvf1 sw sq1
    vf host hvf2 sw sq2
    must $IP link add hb0 type bond mode active-backup
    must $IP link set hvf2 master hb0
    snapshot host >"$W/host.before"
    snapshot q >"$W/q.before"
    bondconf "$W/f.json" active-backup false "hvf1 hvf2"
    cni ADD q bond0 "$W/f.json" cid-q
    expect_err "ADD with host link hvf2 a port of host bond hb0"
    err_text | grep -q hvf2 || fail "the error does not name hvf2: $OUT"
    same_snapshot host "$W/host.before" "failed ADD on the host"
    same_snapshot q "$W/q.before" "failed ADD in pod q"
    assert_ipam_empty "failed ADDs"
}

# Two pods ask for the same host links at once: one gets them, the other fails cleanly.
t_race_host_links() {
    local ok=0 won lost i
    pod a
    pod b
    switch sw "$GW/24"
    vf host hvf1 sw sr1
    vf host hvf2 sw sr2
    bondconf "$W/c.json" active-backup false "hvf1 hvf2"
    for i in a b; do
        (CNI_COMMAND=ADD CNI_CONTAINERID="cid-$i" CNI_NETNS="$NETNS_DIR/$i" CNI_IFNAME=bond0 \
            CNI_PATH=$CNI_BIN timeout 120 $BOND <"$W/c.json" >"$W/$i.out" 2>"$W/$i.err"
        echo $? >"$W/$i.rc") &
    done
    wait
    for i in a b; do
        note "$i: exit $(cat "$W/$i.rc") $(cat "$W/$i.out") $(head -c 500 "$W/$i.err")"
        [ "$(cat "$W/$i.rc")" = 0 ] && ok=$((ok + 1)) && won=$i
    done
    [ $ok -eq 1 ] || fail "$ok of 2 racing ADDs for the same host links succeeded, expected exactly 1"
    lost=a
    [ "$won" = a ] && lost=b
    OUT=$(cat "$W/$lost.out")
    RC=$(cat "$W/$lost.rc")
    expect_err "the losing ADD ($lost)"
    assert_bond "$won" bond0 active-backup "hvf1 hvf2"
    [ -z "$(links "$lost")" ] || fail "the losing pod $lost has links: $(links "$lost" | tr '\n' ';')"
    ! has_link host hvf1 && ! has_link host hvf2 || fail "a host link stayed on the host"
    [ "$(ipam_allocs "$NET")" -eq 1 ] || fail "host-local holds $(ipam_allocs "$NET") addresses, expected the winner's only"
    cni DEL "$won" bond0 "$W/c.json" "cid-$won"
    expect_ok "DEL of the winner"
    has_link host hvf1 && has_link host hvf2 || fail "the host links did not come back after DEL"
    assert_ipam_empty "after DEL"
}

# Every upstream bond-cni config in tests/fixtures/upstream (shipped in /bondnet/fixtures)
# works unchanged: ADD builds the bond it describes over its links (in the pod or moved
# from the host), DEL takes it back. Only an IPAM this guest lacks (calico-ipam) is swapped
# for host-local.
t_upstream_fixtures() {
    local f facts mode lic links ifn ipam ns k conf n=0
    for f in /bondnet/fixtures/*.json; do
        [ -e "$f" ] || fail "no fixtures shipped in /bondnet/fixtures"
        facts=$(jq -M -r '[(.mode // "balance-rr" | tostring), (.linksInContainer // false | tostring),
            ([.links[].name] | sort | join(" ")), (.ifname // "bond0"), (.ipam.type // "none")] | join("|")' "$f") ||
            fail "fixture $f is not JSON"
        mode=$(echo "$facts" | cut -d'|' -f1)
        lic=$(echo "$facts" | cut -d'|' -f2)
        links=$(echo "$facts" | cut -d'|' -f3)
        ifn=$(echo "$facts" | cut -d'|' -f4)
        ipam=$(echo "$facts" | cut -d'|' -f5)
        note "== fixture ${f##*/}: mode $mode, linksInContainer $lic, links '$links', ifname $ifn, ipam $ipam"
        reset_fixture
        switch sw "$GW/24"
        pod p
        ns=p
        [ "$lic" = true ] || ns=host
        k=0
        for l in $links; do
            k=$((k + 1))
            vf "$ns" "$l" sw "fx$k"
        done
        snapshot host >"$W/host.before"
        snapshot p >"$W/pod.before"
        conf="$W/${f##*/}"
        case "$ipam" in
        host-local | static | none) cp "$f" "$conf" ;;
        *) jq -M --arg s "$SUBNET" '.ipam = {type: "host-local", subnet: $s}' "$f" >"$conf" ;;
        esac
        cni ADD p "$ifn" "$conf"
        expect_ok "ADD with upstream config ${f##*/}"
        assert_bond p "$ifn" "$mode" "$links"
        if [ "$ipam" = static ]; then
            [ -n "$(addrs p "$ifn")" ] || fail "${f##*/}: no static address on $ifn"
        fi
        cni DEL p "$ifn" "$conf"
        expect_ok "DEL with upstream config ${f##*/}"
        ! has_link p "$ifn" || fail "${f##*/}: $ifn still in the pod after DEL"
        same_snapshot host "$W/host.before" "${f##*/}: host after DEL"
        same_snapshot p "$W/pod.before" "${f##*/}: pod after DEL"
        n=$((n + 1))
    done
    [ $n -ge 5 ] || fail "only $n upstream fixtures ran"
    note "$n upstream configs passed"
}

# reset_fixture: between fixtures, no netns and no links but lo, no IPAM state.
reset_fixture() {
    local ns l
    for ns in $($IP netns list | cut -d' ' -f1); do $IP netns del "$ns"; done
    for l in $(links host | cut -d' ' -f1); do $IP link del "$l" 2>/dev/null; done
    rm -rf "$IPAM_DIR"
}

# The seed's SR-IOV failover NAD as the seed has it (miimon "100", cniVersion 0.3.1), with
# the CNI_ARGS Multus passes.
t_seed_sriov_failover() {
    pair_pod p sw "10.56.217.1/24"
    seed_conf >"$W/c.json"
    # What Multus passes along.
    CNI_ARGS_EXTRA="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=test-pod;K8S_POD_INFRA_CONTAINER_ID=cid-p"
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD with the seed config"
    [ "$(jout '.cniVersion')" = 0.3.1 ] || fail "result is not shaped for cniVersion 0.3.1: $OUT"
    assert_bond p bond0 active-backup "net1 net2"
    [ "$(bond_opt p bond0 miimon)" = 100 ] || fail "miimon is $(bond_opt p bond0 miimon), configured \"100\""
    ping_ok p 10.56.217.1 || fail "no ping reply from the gateway"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    assert_released p bond0 "net1 net2"
}

# The bond NAD of the seed (shared/seeds/000): active-backup, failOverMac 1,
# linksInContainer true, net1/net2, host-local.
seed_conf() {
    cat <<'EOF'
{
  "type": "bond",
  "cniVersion": "0.3.1",
  "name": "bond-net1",
  "ifname": "bond0",
  "mode": "active-backup",
  "failOverMac": 1,
  "linksInContainer": true,
  "miimon": "100",
  "links": [
    {"name": "net1"},
    {"name": "net2"}
  ],
  "ipam": {
    "type": "host-local",
    "subnet": "10.56.217.0/24",
    "routes": [{
      "dst": "0.0.0.0/0"
    }],
    "gateway": "10.56.217.1"
  }
}
EOF
}

# An IPAM plugin that hangs (a script whose child sleeps, so killing the script alone would
# leave its stdout open): ADD with host links is stopped at ipamTimeout with code 11, the
# host links come back as they were, the plugin and its child are gone, IPAM DEL was called
# for what the killed ADD may have reserved, and the links' locks are free for the next ADD.
t_ipam_hangs() {
    mkdir -p "$W/bin"
    cat >"$W/bin/hang" <<EOF
#!/bin/sh
echo "\$CNI_COMMAND" >>"$W/calls"
[ "\$CNI_COMMAND" = ADD ] || exit 0
sleep 600 &
echo \$! >"$W/sleeper.pid"
wait
EOF
    chmod +x "$W/bin/hang"
    CNI_BIN="$W/bin:/opt/cni/bin"
    pod p
    switch sw "$GW/24"
    vf host hvf1 sw swp1
    vf host hvf2 sw swp2
    must $IP link set hvf1 up
    snapshot host >"$W/host.before"
    snapshot p >"$W/pod.before"
    bondconf "$W/h.json" active-backup false "hvf1 hvf2" '{"ipam": {"type": "hang"}, "ipamTimeout": 2}'
    cni ADD p bond0 "$W/h.json"
    expect_err "ADD with a hung IPAM plugin" 11
    err_text | grep -q "did not answer ADD within 2 s" || fail "the error does not say the IPAM plugin timed out: $OUT"
    same_snapshot host "$W/host.before" "host links back after the stopped ADD"
    same_snapshot p "$W/pod.before" "pod after the stopped ADD"
    [ "$(tr '\n' ' ' <"$W/calls")" = "ADD DEL " ] || fail "IPAM calls were '$(tr '\n' ' ' <"$W/calls")', expected ADD then DEL"
    pid=$(cat "$W/sleeper.pid")
    if [ -d "/proc/$pid" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat"; then
        fail "the hung plugin's child $pid still runs"
    fi
    bondconf "$W/c.json" active-backup false "hvf1 hvf2"
    cni ADD p bond0 "$W/c.json"
    expect_ok "ADD over the same host links right after (their locks are free)"
    assert_bond p bond0 active-backup "hvf1 hvf2"
    cni DEL p bond0 "$W/c.json"
    expect_ok "DEL"
    same_snapshot host "$W/host.before" "host links back after DEL"
    assert_ipam_empty "after DEL"
}
