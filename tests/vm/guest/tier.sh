#!/bin/sh
# Runs the real-kernel tier's scenarios (all, or those named as arguments), one at a time,
# each in a subshell after a reset of the guest, and prints `SCENARIO <name> PASS` or
# `SCENARIO <name> FAIL: <why>` (preceded by the scenario's log) for each. Every scenario
# ends with all its attachments deleted, so anything IPAM or the plugin still keeps on disk
# after it is a leak, and fails it.

# name | function and arguments (scenarios.sh)
SCENARIOS='
version-lists-supported-versions|t_version
results-shaped-for-each-cni-version|t_versions
mode-balance-rr|t_mode balance-rr
mode-active-backup|t_mode active-backup
mode-balance-xor|t_mode balance-xor
mode-broadcast|t_mode broadcast
mode-802.3ad|t_mode 802.3ad
mode-balance-tlb|t_mode balance-tlb
mode-balance-alb|t_mode balance-alb
mode-given-as-number|t_mode_number
options-active-backup-primary-delays|t_opts_active_backup
options-802.3ad-lacp|t_opts_lacp
options-arp-monitoring|t_opts_arp
options-balance-rr-and-tlb|t_opts_rr_tlb
option-for-another-mode-is-refused|t_opt_wrong_mode
duplicate-port-macs-in-alb|t_dup_mac
active-backup-failover-keeps-traffic|t_failover
802.3ad-aggregates-with-peer-bond|t_lacp
links-in-container-true|t_lic_true
links-in-container-false-moves-links-and-back|t_lic_false
links-in-container-false-refuses-node-address-or-route-link|t_lic_false_refuses_addressed
mtu-set-applies-to-bond-and-ports|t_mtu_set
mtu-omitted-takes-smallest-port-mtu|t_mtu_omitted
del-restores-mac-mtu-admin-state|t_restore
del-twice-succeeds|t_del_twice
del-after-netns-gone-succeeds|t_del_netns_gone
del-when-bond-or-port-already-gone|t_del_partly_gone
check-passes-on-good-bond|t_check_good
check-catches-removed-port|t_check_removed
check-catches-mtu-and-address-drift|t_check_drift
ipam-host-local-address-and-routes|t_ipam_host_local
ipam-static-addresses-routes-dns|t_ipam_static
ipam-host-local-dual-stack-three-ports|t_ipam_dual_stack
netns-given-as-proc-path|t_netns_proc_path
rollback-when-ipam-config-fails|t_rollback_ipam_config
rollback-when-ipam-range-exhausted|t_rollback_ipam_exhausted
rollback-when-the-ipam-plugin-hangs|t_ipam_hangs
rollback-when-a-link-is-missing|t_rollback_missing_link
rollback-when-a-port-belongs-to-another-bond|t_rollback_busy_port
rollback-when-a-host-link-name-is-taken-in-the-pod|t_rollback_name_taken
second-add-for-same-ifname-keeps-the-first|t_add_existing_ifname
bad-mode-is-code-7-and-changes-nothing|t_bad_mode
protocol-errors-have-spec-codes|t_protocol_errors
two-bonds-in-one-pod|t_two_bonds
log-file-takes-the-logs|t_log_file
status-reports-the-bonding-driver|t_status
gc-forgets-attachments-not-valid|t_gc
sixteen-concurrent-adds|t_concurrent
eight-concurrent-adds-with-host-links|t_concurrent_host_links
racing-adds-for-the-same-host-links|t_race_host_links
seed-sriov-failover-config|t_seed_sriov_failover
upstream-configs-work-unchanged|t_upstream_fixtures
'
IP=/usr/sbin/ip

# Back to a bare guest: no netns, no links but lo, no IPAM state.
reset_guest() {
    for ns in $($IP netns list 2>/dev/null | cut -d' ' -f1); do
        $IP netns del "$ns" 2>/dev/null
    done
    for l in $($IP -o link show | awk '{ sub(/:$/, "", $2); sub(/@.*/, "", $2); print $2 }'); do
        [ "$l" = lo ] || $IP link del "$l" 2>/dev/null
    done
    rm -rf /var/lib/cni /run/bondnet
    mkdir -p /var/lib/cni
}

# leftovers: what a scenario that deleted every attachment it added must not leave behind:
# host-local reservations and the plugin's saved port state (its default stateDir).
leftovers() {
    local f
    for f in /var/lib/cni/networks/*/* /var/lib/cni/bondnet/*.json; do
        [ -e "$f" ] || continue
        case "${f##*/}" in last_reserved_ip.* | lock) continue ;; esac
        echo "$f"
    done
}

uptime_cs() { cut -d' ' -f1 /proc/uptime | tr -d .; }

echo "TIER-BEGIN $(echo "$SCENARIOS" | grep -c '|') scenarios"
start=$(uptime_cs)
echo "$SCENARIOS" | while IFS='|' read -r name fn; do
    [ -n "$name" ] || continue
    if [ $# -gt 0 ]; then
        want=0
        for a in "$@"; do [ "$a" = "$name" ] && want=1; done
        [ $want -eq 1 ] || continue
    fi
    reset_guest
    W="/tmp/w/$name"
    rm -rf "$W"
    mkdir -p "$W"
    t0=$(uptime_cs)
    # shellcheck disable=SC2086
    (W="$W"; . /bondnet/lib.sh; . /bondnet/scenarios.sh; $fn) >>"$W/log" 2>&1 </dev/null
    rc=$?
    if [ $rc -eq 0 ] && [ -n "$(leftovers)" ]; then
        echo "left behind after every attachment was deleted: $(leftovers | tr '\n' ' ')" >"$W/why"
        rc=1
    fi
    t1=$(uptime_cs)
    secs="$(((t1 - t0) / 100)).$(((t1 - t0) % 100 / 10))"
    if [ $rc -eq 0 ]; then
        if [ -e /bondnet/verbose ]; then
            echo "--- log of $name"
            sed 's/^/  | /' "$W/log"
        fi
        echo "SCENARIO $name PASS"
        echo "  ($name: ${secs}s)"
    else
        why="$(cat "$W/why" 2>/dev/null)"
        [ -n "$why" ] || why="exited $rc without a reason (see log)"
        echo "--- log of $name (last 80 lines)"
        tail -n 80 "$W/log" | sed 's/^/  | /'
        echo "SCENARIO $name FAIL: $why"
    fi
done
end=$(uptime_cs)
echo "TIER-END $(((end - start) / 100))s"
