#!/bin/sh
# The built-in example: the seed's SR-IOV failover bond NAD (active-backup, failOverMac 1,
# linksInContainer true, net1/net2 already in the pod as Multus leaves them, host-local),
# run through the release bond binary: the ADD result, the bond as the kernel sees it, a
# failover with traffic, and DEL.
W=/tmp/w/demo
. /bondnet/lib.sh
. /bondnet/scenarios.sh
fail() { echo "BONDNET-FAIL: demo: $*"; exit 1; }
must() { "$@" >/dev/null 2>&1 || fail "setup step failed: $*"; }

pair_pod pod sw "10.56.217.1/24"
seed_conf >"$W/nad.json"
echo "=== bond NAD config (shared/seeds/000), CNI_IFNAME=bond0, links net1/net2 in the pod"
cat "$W/nad.json"
echo
echo "=== CNI_COMMAND=ADD bond < config"
cni ADD pod bond0 "$W/nad.json"
echo "exit $RC"
printf '%s' "$OUT" | jq -M . 2>/dev/null || printf '%s\n' "$OUT"
[ "$RC" -eq 0 ] || { cat "$W/err"; fail "ADD failed (exit $RC)"; }
echo
echo "=== ip -d link show bond0 (in the pod)"
$IP -n pod -d link show bond0
echo
echo "=== ip addr show bond0; ip route (in the pod)"
$IP -n pod addr show bond0
$IP -n pod route
echo
act=$(active_port pod bond0)
echo "=== active slave: $act; ping the gateway, then take its switch port down"
if ping_ok pod 10.56.217.1; then echo "ping 10.56.217.1: ok"; else fail "no ping reply from 10.56.217.1"; fi
$IP -n sw link set "podp${act#net}" down
sleep 1
echo "active slave now: $(active_port pod bond0)"
if ping_ok pod 10.56.217.1; then echo "ping 10.56.217.1 after failover: ok"; else fail "no ping reply after failover"; fi
echo
echo "=== CNI_COMMAND=DEL bond < config"
cni DEL pod bond0 "$W/nad.json"
echo "exit $RC $OUT"
[ "$RC" -eq 0 ] || fail "DEL failed (exit $RC)"
$IP -n pod -br link
