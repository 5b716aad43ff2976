# Helpers for the real-kernel tier's scenarios (busybox ash, sourced in a subshell per
# scenario). A scenario calls `fail "why"` to stop with a reason; every command it runs and
# every CNI call (env, config, stdout, stderr, exit code) goes to $W/log, which the runner
# prints when the scenario fails.
#
# The root netns of the guest plays the node ("host"); each pod is a named netns; veth
# pairs stand in for VFs, their peer ends on a bridge (or a bond) in a "switch" netns.

IP=/usr/sbin/ip # busybox's ip applet shadows /sbin/ip in ash: always use Debian's by path
BOND=/opt/cni/bin/bond
CNI_BIN=/opt/cni/bin
NETNS_DIR=/run/netns
IPAM_DIR=/var/lib/cni/networks
W=${W:-/tmp/w/adhoc}
mkdir -p "$W"

fail() {
    echo "$*" >"$W/why"
    exit 1
}
note() { echo "$*" >>"$W/log"; }
# must CMD...: a setup step that has to work; its output goes to the log.
must() {
    note "+ $*"
    "$@" >>"$W/log" 2>&1 || fail "setup step failed: $*"
}
# ipn NS ARGS...: Debian's ip in netns NS ("host" is the guest's root netns).
ipn() {
    local ns=$1
    shift
    if [ "$ns" = host ]; then $IP "$@"; else $IP -n "$ns" "$@"; fi
}
nsexec() {
    local ns=$1
    shift
    if [ "$ns" = host ]; then "$@"; else $IP netns exec "$ns" "$@"; fi
}

# --- topology ---------------------------------------------------------------------------

# pod NAME: a fresh pod netns with lo up.
pod() {
    must $IP netns add "$1"
    must $IP -n "$1" link set lo up
}

# switch NAME [CIDR]: a peer netns with bridge br0 (up, with CIDR on it when given).
switch() {
    pod "$1"
    must $IP -n "$1" link add br0 type bridge
    must $IP -n "$1" link set br0 up
    [ -z "${2:-}" ] || must $IP -n "$1" addr add "$2" dev br0
}

# vf NS IF SWITCH PORT [MTU]: a veth pair, IF in NS (host or a pod), PORT in SWITCH's
# bridge and up. IF stays down, as a fresh VF would be.
vf() {
    local ns=$1 ifn=$2 sw=$3 port=$4 mtu=${5:-1500}
    local where=""
    [ "$ns" = host ] || where="netns $ns"
    # shellcheck disable=SC2086
    must $IP link add name "$ifn" $where mtu "$mtu" type veth peer name "$port" netns "$sw" mtu "$mtu"
    if ipn "$sw" link show br0 >/dev/null 2>&1; then
        must $IP -n "$sw" link set "$port" master br0
    fi
    must $IP -n "$sw" link set "$port" up
}

# pair_pod POD SWITCH CIDR: the usual layout: POD with net1, net2 uplinked to SWITCH's br0.
pair_pod() {
    pod "$1"
    switch "$2" "$3"
    vf "$1" net1 "$2" "${1}p1"
    vf "$1" net2 "$2" "${1}p2"
}

# --- CNI calls --------------------------------------------------------------------------

# cni CMD POD IFNAME CONF [CONTAINERID]: runs the bond binary as a runtime would.
# POD is a netns name (its path under /run/netns is passed), an absolute path (passed as
# is), or "-" for an empty CNI_NETNS.
# Sets RC and OUT (stdout); stderr is in $W/err. A 60 s guard catches a hung plugin.
cni() {
    local cmd=$1 ns=$2 ifn=$3 conf=$4 cid=${5:-cid-$2}
    local nspath="$NETNS_DIR/$ns"
    [ "$ns" = "-" ] && nspath=""
    case "$ns" in /*) nspath=$ns ;; esac
    note "== $cmd: CNI_COMMAND=$cmd CNI_CONTAINERID=$cid CNI_NETNS=$nspath CNI_IFNAME=$ifn CNI_PATH=$CNI_BIN"
    note "   config: $(cat "$conf")"
    CNI_COMMAND=$cmd CNI_CONTAINERID=$cid CNI_NETNS=$nspath CNI_IFNAME=$ifn \
        CNI_PATH=$CNI_BIN CNI_ARGS="${CNI_ARGS_EXTRA:-}" \
        timeout 60 $BOND <"$conf" >"$W/out" 2>"$W/err"
    RC=$?
    OUT=$(cat "$W/out")
    note "   -> exit $RC, stdout: $OUT"
    [ ! -s "$W/err" ] || note "   stderr: $(head -c 3000 "$W/err")"
    return 0
}

# jout FILTER: a jq filter over the last stdout (raw output).
jout() { printf '%s' "$OUT" | jq -M -r "$@" 2>/dev/null; }

# expect_ok WHAT: success; stdout empty (DEL, CHECK) or a JSON object (parsed by the
# jout calls that read it).
expect_ok() {
    [ "$RC" -eq 0 ] || fail "$1: expected success, got exit $RC: $OUT $(head -c 500 "$W/err")"
    case "$OUT" in "" | "{"*) ;; *) fail "$1: stdout is not a JSON object: $OUT" ;; esac
}
# expect_err WHAT [CODE]: a failure with CNI error JSON on stdout (and that code, if given).
expect_err() {
    [ "$RC" -ne 0 ] || fail "$1: expected failure, got exit 0: $OUT"
    local cm code msg
    cm=$(jout '"\(.code // "")|\(.msg // "")"')
    code=${cm%%|*}
    msg=${cm#*|}
    [ -n "$code" ] || fail "$1: exit $RC without CNI error JSON on stdout: '$OUT'"
    [ -n "$msg" ] || fail "$1: error JSON without msg: $OUT"
    [ -z "${2:-}" ] || [ "$code" = "$2" ] || fail "$1: error code $code, expected $2: $OUT"
}
# err_text: msg and details of the last error, one line.
err_text() { jout '[.msg, (.details // "")] | join(" ")'; }

# conf FILE: writes stdin to FILE after checking it is JSON.
conf() {
    cat >"$1"
    jq -e . "$1" >/dev/null || fail "bad test config $1"
}
# with_prev CONF RESULT OUT: CONF plus prevResult (for CHECK and DEL).
with_prev() {
    printf '%s' "$2" | jq -M --slurpfile c "$1" '$c[0] + {prevResult: .}' >"$3"
}

# --- facts about links ------------------------------------------------------------------
# Read from `ip -o -d link show` with awk: jq costs ~0.4 s a call under TCG, ip ~0.1 s.

# links NS [IF]: one line per link but lo:
#   name mtu mac up|down controller kind port-kind
# (kind: bond, veth, bridge...; port-kind: bond_slave, bridge_slave or -).
links() {
    local ns=$1
    shift
    ipn "$ns" -o -d link show ${1:+dev "$1"} 2>/dev/null | awk '{
        n = split($0, seg, /\\ +/)
        m = split(seg[1], h, " ")
        name = h[2]; sub(/:$/, "", name); sub(/@.*/, "", name)
        if (name == "lo") next
        up = (h[3] ~ /[<,]UP[,>]/) ? "up" : "down"
        mtu = "-"; ctl = "-"
        for (i = 3; i < m; i++) {
            if (h[i] == "mtu") mtu = h[i + 1]
            if (h[i] == "master") ctl = h[i + 1]
        }
        split(seg[2], e, " ")
        mac = (e[1] == "link/ether") ? e[2] : "-"
        kind = "-"; port = "-"
        # A physical device (a real VF) has no link kind: its port details come first.
        if (n >= 3) {
            split(seg[3], k, " ")
            if (k[1] ~ /_slave$/) port = k[1]
            else if (k[1] != "addrgenmode") kind = k[1]
        }
        if (n >= 4) { split(seg[4], q, " "); if (q[1] ~ /_slave$/) port = q[1] }
        print name, mtu, mac, up, ctl, kind, port
    }'
}
# field NS IF N: field N of links' line for IF (empty when IF does not exist).
field() { links "$1" "$2" | cut -d' ' -f"$3"; }
has_link() { ipn "$1" link show dev "$2" >/dev/null 2>&1; }
mtu() { field "$1" "$2" 2; }
mac() { field "$1" "$2" 3; }
admin_up() { [ "$(field "$1" "$2" 4)" = up ]; }
controller() { field "$1" "$2" 5; }
link_kind() { field "$1" "$2" 6; }
port_kind() { field "$1" "$2" 7; }
# bond_opt NS BOND OPTION: the value ip -d prints after OPTION in the bond's details.
bond_opt() {
    ipn "$1" -o -d link show dev "$2" 2>/dev/null | awk -v o="$3" '{
        split($0, seg, /\\ +/)
        m = split(seg[3], w, " ")
        if (w[1] != "bond") exit
        for (i = 2; i < m; i++) if (w[i] == o) { print w[i + 1]; exit }
    }'
}
bond_mode() { bond_opt "$1" "$2" mode; }
# ports NS BOND: names of the links whose controller is BOND, sorted, space separated.
ports() { links "$1" | awk -v b="$2" '$5 == b { print $1 }' | sort | tr '\n' ' ' | sed 's/ $//'; }
# addrs NS IF: global addresses as a/len, sorted, space separated.
addrs() { ipn "$1" -o addr show dev "$2" scope global | awk '{ print $4 }' | sort | tr '\n' ' ' | sed 's/ $//'; }

# snapshot NS: every link but lo (name, mtu, mac, admin state, controller, kind) and every
# global address, sorted: what "exactly as before" means in the rollback checks.
snapshot() {
    links "$1" | sort
    ipn "$1" -o addr show scope global | awk '{ print "addr", $2, $4 }' | sort
}
# same_snapshot NS BEFORE_FILE WHAT: fails with a diff when NS no longer matches.
same_snapshot() {
    snapshot "$1" >"$W/snap.now"
    if ! cmp -s "$2" "$W/snap.now"; then
        note "--- $1 before"
        cat "$2" >>"$W/log"
        note "--- $1 now"
        cat "$W/snap.now" >>"$W/log"
        fail "$3: netns $1 differs from before: now [$(tr '\n' ';' <"$W/snap.now")] was [$(tr '\n' ';' <"$2")]"
    fi
}

# ipam_allocs NETWORK: how many addresses host-local holds for NETWORK.
ipam_allocs() {
    local d="$IPAM_DIR/$1"
    [ -d "$d" ] || {
        echo 0
        return
    }
    ls "$d" | grep -v -e '^last_reserved_ip' -e '^lock$' | grep -c . || true
}

# ping_ok NS ADDR: up to 8 tries of one echo each (a bond needs a moment after going up).
ping_ok() {
    local i=0
    while [ $i -lt 8 ]; do
        nsexec "$1" ping -c 1 -W 1 "$2" >>"$W/log" 2>&1 && return 0
        i=$((i + 1))
    done
    return 1
}

# bonding_proc NS BOND: the kernel's /proc/net/bonding report, read inside NS.
bonding_proc() { nsexec "$1" cat "/proc/net/bonding/$2"; }
active_port() { bonding_proc "$1" "$2" | sed -n 's/^Currently Active Slave: //p'; }

# wait_for SECONDS CMD...: polls CMD every 0.2 s until it succeeds.
wait_for() {
    local n=$(($1 * 5))
    shift
    while [ $n -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
        n=$((n - 1))
    done
    return 1
}
