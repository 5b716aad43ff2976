#!/usr/bin/env bash
# Starts a real Kubernetes control plane on loopback: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler, with TLS everywhere, client certificates,
# service-account signing keys, Node,RBAC authorization and the default admission plugins.
#
#   tests/controlplane/start.sh DIR [all|etcd|apiserver|controller-manager|scheduler]
#   tests/controlplane/start.sh DIR node NAME
#   tests/controlplane/stop.sh  DIR [all|apiserver|apiserver-crash|controller-manager|scheduler]
#
# DIR holds everything: pki/ (a throwaway CA, the API server's serving certificate, one client
# certificate per component and one for the test in group system:masters, the service-account
# key pair, all made with openssl), etcd/ (the data), one log, pid and port file per process,
# and DIR/kubeconfig (the test's admin) plus DIR/<component>.kubeconfig. `all` (the default)
# starts whatever is not running; naming one component (re)starts just it, on the same port
# over the same etcd: the restart test uses `apiserver`.
#
# Ports: on its first start each server gets a random port below the kernel's ephemeral range
# (so no outgoing connection takes it). Another test may still take it between the probe and
# the bind: when the server exits with "address already in use", or when what answers its
# health check on that port is not its own process (ss names the listening socket's owner;
# another test's etcd answers plain HTTP health checks just as well), it is stopped and
# started again on a fresh port, up to 8 times. Once a server has come up, its port is
# recorded in DIR/<name>.port, and every later start (`start.sh DIR apiserver` after
# stop.sh, or `all` again) keeps it, since clients hold it: if it is taken then, start.sh
# fails saying so rather than moving. kube-controller-manager and kube-scheduler serve no
# port (--secure-port=0). The binaries are build.sh's (override with BONDNET_CONTROLPLANE_BIN,
# a directory).
#
# `node NAME` (with the API server running) issues a kubelet's client certificate
# (CN=system:node:NAME, O=system:nodes, as the Node authorizer and NodeRestriction expect) and
# writes what the SR-IOV node VM needs into DIR/node-NAME: kubelet.kubeconfig (the server at
# https://10.0.2.100:443, where the VM's user network forwards to this API server, which the
# serving certificate names), ca.crt, node-name and apiserver-port (see tests/vm/run.sh --node).
#
# The API server routes to webhooks and aggregated APIs through their Service's endpoints
# (--enable-aggregator-routing), so a webhook that listens on a test address is reached
# through its Service and EndpointSlice, as in a cluster.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:?usage: start.sh DIR [all|etcd|apiserver|controller-manager|scheduler]}
what=${2:-all}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pki=$dir/pki

say() { echo "controlplane/start.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

if [[ -n ${BONDNET_CONTROLPLANE_BIN:-} ]]; then
    bin=$BONDNET_CONTROLPLANE_BIN
else
    bin=$("$here/build.sh") || die "the control plane cannot be built: see target/controlplane/build.log"
fi
for b in etcd kube-apiserver kube-controller-manager kube-scheduler; do
    [[ -x $bin/$b ]] || die "no $b in $bin: run tests/controlplane/build.sh"
done
for t in ss curl openssl setsid; do
    command -v "$t" >/dev/null || die "$t is needed and not on PATH"
done

# The service network the API server allocates ClusterIPs from. Nothing routes it and no test
# connects to it: webhooks are reached through their endpoints.
service_cidr=10.96.0.0/24

alive() { [[ -f $dir/$1.pid ]] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

# A random port below the ephemeral range that nothing listens on now, other than the ports
# given (already picked for the same server).
random_port() { # [port...]
    local low p i
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    for i in $(seq 100); do
        p=$((10000 + RANDOM % (low - 10000)))
        [[ " $* " == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found below $low"
}

# The listening sockets on a loopback TCP port, one line each (with the owner when it is a
# process of this user), or nothing.
listeners() { # port
    ss -Hltnp "sport = :$1" 2>/dev/null | tr -s ' ' || true
}

# The same, on one line.
listeners_line() { # port
    local l
    l=$(listeners "$1" | tr '\n' ' ')
    echo "${l% }"
}

# Whether the socket listening on `port` is process `pid`'s own, not another test's server's.
owns_port() { # pid port
    [[ $(listeners "$2") == *"pid=$1,"* ]]
}

# --- certificates --------------------------------------------------------------------------

cert() { # name subject ext-lines... : a key and a certificate signed by the CA
    local name=$1 subject=$2
    shift 2
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$name.key.ec" -out "$name.csr" -subj "$subject"
    openssl pkcs8 -topk8 -nocrypt -in "$name.key.ec" -out "$name.key"
    printf '%s\n' "basicConstraints=CA:FALSE" "$@" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$name.ext" -out "$name.crt"
    rm -f "$name.key.ec" "$name.csr" "$name.ext"
}

client_cert() { # name subject
    cert "$1" "$2" "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth"
}

make_pki() {
    [[ -f $pki/done ]] && return 0
    rm -rf "$pki"
    mkdir -p "$pki"
    (
        cd "$pki"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -keyout ca.key -out ca.crt -subj "/CN=bondnet-test-ca" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        cert apiserver "/CN=kube-apiserver" "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" \
            "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:10.0.2.100,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
        client_cert admin "/O=system:masters/CN=bondnet-test"
        client_cert controller-manager "/CN=system:kube-controller-manager"
        client_cert scheduler "/CN=system:kube-scheduler"
        client_cert apiserver-kubelet-client "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client"
        # The service-account token signing pair.
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
        openssl pkey -in sa.key -pubout -out sa.pub
        touch done
    ) >"$dir/pki.log" 2>&1 || die "openssl failed: see $dir/pki.log"
}

kubeconfig() { # file port user [server]
    local file=$1 port=$2 user=$3 server=${4:-https://127.0.0.1:$2}
    cat >"$file.new" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: bondnet-test
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$pki/$user.crt")
    client-key-data: $(base64 -w0 "$pki/$user.key")
contexts:
- name: bondnet-test
  context:
    cluster: bondnet-test
    user: $user
    namespace: default
current-context: bondnet-test
KUBECONFIG
    mv "$file.new" "$file"
}

# --- processes -----------------------------------------------------------------------------

# Starts `name` with "$@" (its log appended to DIR/name.log), records its pid.
spawn() {
    local name=$1
    shift
    echo "=== $(date -u +%FT%TZ) start: $*" >>"$dir/$name.log"
    setsid "$@" </dev/null >>"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
}

# Whether the log of `name` since its last start says its port was taken.
port_taken() {
    awk '/^=== .* start: / { taken = 0 } /address already in use/ { taken = 1 } END { exit !taken }' "$dir/$1.log"
}

# Ends the process just spawned for `name` (its recorded pid only): TERM, KILL after 5 s.
kill_spawned() { # name
    local pid i
    pid=$(cat "$dir/$1.pid")
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Waits up to `tenths` tenths of a second for the `name` just spawned to pass `check...`, and
# for the listening socket on each of `ports` to be its own. Returns 0 then; 1 when the ports
# turn out taken: it exited with "address already in use", or what passed the check is another
# process (another test's server that bound the port first), in which case ours is stopped;
# 2 when it exited for another reason or never passed the check.
wait_up() { # name "port..." tenths check...
    local name=$1 ports=$2 tenths=$3 pid i p
    shift 3
    pid=$(cat "$dir/$name.pid")
    for ((i = 0; i < tenths; i++)); do
        alive "$name" || break
        if "$@"; then
            for p in $ports; do
                if ! owns_port "$pid" "$p"; then
                    say "$name: port $p answers, but not as our process $pid: $(listeners_line "$p")"
                    kill_spawned "$name"
                    return 1
                fi
            done
            return 0
        fi
        sleep 0.1
    done
    if ! alive "$name" && port_taken "$name"; then return 1; fi
    return 2
}

# For a server started before: fails unless each of its recorded ports (DIR/<name>.port) is
# free, since clients hold them and the server must not move.
require_free() { # what name...
    local what=$1 name p
    shift
    for name in "$@"; do
        p=$(cat "$dir/$name.port")
        if [[ -n $(listeners "$p") ]]; then
            die "$what: its port $p (recorded in $dir/$name.port, and clients hold it) is taken by another process: $(listeners_line "$p"); a restart keeps its port, so it is not moved: free the port, or start a fresh control plane in a new DIR"
        fi
    done
}

etcd_healthy() { # port
    [[ $(curl -sf "http://127.0.0.1:$1/health" 2>/dev/null) == *'"health":"true"'* ]]
}

apiserver_ready() { # port
    curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
        "https://127.0.0.1:$1/readyz" >/dev/null 2>&1
}

start_etcd() {
    alive etcd && return 0
    local try port peer rc recorded=
    if [[ -f $dir/etcd.port && -f $dir/etcd-peer.port ]]; then
        recorded=yes
        port=$(cat "$dir/etcd.port")
        peer=$(cat "$dir/etcd-peer.port")
    fi
    for try in 1 2 3 4 5 6 7 8; do
        if [[ -n $recorded ]]; then
            require_free etcd etcd etcd-peer
        else
            port=$(random_port)
            peer=$(random_port "$port")
        fi
        spawn etcd "$bin/etcd" --name bondnet-test --data-dir "$dir/etcd" \
            --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
            --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "bondnet-test=http://127.0.0.1:$peer" --unsafe-no-fsync --log-level warn
        rc=0
        wait_up etcd "$port $peer" 200 etcd_healthy "$port" || rc=$?
        if ((rc == 0)); then
            echo "$port" >"$dir/etcd.port"
            echo "$peer" >"$dir/etcd-peer.port"
            return 0
        fi
        if ((rc == 1)); then
            [[ -z $recorded ]] || die "etcd: its recorded port $port or $peer (clients hold them, so it is not moved) was taken by another process while it started: $(listeners_line "$port") $(listeners_line "$peer"); see $dir/etcd.log"
            say "etcd: port $port or $peer taken, retrying on fresh ports"
            continue
        fi
        die "etcd did not become healthy on $port within 20 s: see $dir/etcd.log ($(tail -n3 "$dir/etcd.log" | tr '\n' ' '))"
    done
    die "etcd: every port tried was taken"
}

start_apiserver() {
    alive apiserver && return 0
    local try port etcd_port rc recorded=
    [[ -f $dir/etcd.port ]] || die "kube-apiserver: etcd was never started in $dir: start it first (start.sh $dir etcd, or all)"
    etcd_port=$(cat "$dir/etcd.port")
    if [[ -f $dir/apiserver.port ]]; then
        recorded=yes
        port=$(cat "$dir/apiserver.port")
    fi
    for try in 1 2 3 4 5 6 7 8; do
        if [[ -n $recorded ]]; then
            require_free kube-apiserver apiserver
        else
            port=$(random_port "$etcd_port")
        fi
        spawn apiserver "$bin/kube-apiserver" \
            --etcd-servers "http://127.0.0.1:$etcd_port" \
            --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
            --endpoint-reconciler-type none \
            --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
            --client-ca-file "$pki/ca.crt" \
            --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
            --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
            --service-account-issuer https://kubernetes.default.svc.cluster.local \
            --service-account-key-file "$pki/sa.pub" \
            --service-account-signing-key-file "$pki/sa.key" \
            --service-cluster-ip-range "$service_cidr" \
            --authorization-mode Node,RBAC \
            --allow-privileged=true \
            --enable-aggregator-routing=true \
            --profiling=false ${BONDNET_APISERVER_ARGS:-}
        kubeconfig "$dir/kubeconfig" "$port" admin
        rc=0
        wait_up apiserver "$port" 1200 apiserver_ready "$port" || rc=$?
        if ((rc == 0)); then
            echo "$port" >"$dir/apiserver.port"
            kubeconfig "$dir/controller-manager.kubeconfig" "$port" controller-manager
            kubeconfig "$dir/scheduler.kubeconfig" "$port" scheduler
            return 0
        fi
        if ((rc == 1)); then
            [[ -z $recorded ]] || die "kube-apiserver: its recorded port $port (clients hold it, so it is not moved) was taken by another process while it started: $(listeners_line "$port"); see $dir/apiserver.log"
            say "kube-apiserver: port $port taken, retrying on a fresh port"
            continue
        fi
        die "kube-apiserver not ready within 120 s: see $dir/apiserver.log ($(tail -n3 "$dir/apiserver.log" | tr '\n' ' '))"
    done
    die "kube-apiserver: every port tried was taken"
}

start_controller_manager() {
    alive controller-manager && return 0
    # No kubelet renews its Lease here: with the default grace period the node lifecycle
    # controller would mark every Node unreachable after a minute and taint it. A long one
    # keeps the rest of its work (it lifts the not-ready taint once a Node posts Ready).
    spawn controller-manager "$bin/kube-controller-manager" \
        --kubeconfig "$dir/controller-manager.kubeconfig" --secure-port 0 --leader-elect=false \
        --node-monitor-grace-period 8760h \
        --use-service-account-credentials=true \
        --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
        --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
        --service-cluster-ip-range "$service_cidr" --concurrent-gc-syncs 5
    sleep 0.5
    alive controller-manager || die "kube-controller-manager exited: see $dir/controller-manager.log ($(tail -n3 "$dir/controller-manager.log" | tr '\n' ' '))"
}

start_scheduler() {
    alive scheduler && return 0
    spawn scheduler "$bin/kube-scheduler" \
        --kubeconfig "$dir/scheduler.kubeconfig" --secure-port 0 --leader-elect=false
    sleep 0.5
    alive scheduler || die "kube-scheduler exited: see $dir/scheduler.log ($(tail -n3 "$dir/scheduler.log" | tr '\n' ' '))"
}

make_node() { # name
    local name=${1:?start.sh DIR node NAME} d
    [[ $name =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "node name $name is not a DNS label"
    [[ -f $dir/apiserver.port ]] || die "node $name: start the API server first"
    d=$dir/node-$name
    mkdir -p "$d"
    (cd "$pki" && client_cert "node-$name" "/O=system:nodes/CN=system:node:$name") >>"$dir/pki.log" 2>&1 ||
        die "openssl failed: see $dir/pki.log"
    kubeconfig "$d/kubelet.kubeconfig" "$(cat "$dir/apiserver.port")" "node-$name" https://10.0.2.100:443
    cp "$pki/ca.crt" "$d/ca.crt"
    echo "$name" >"$d/node-name"
    cp "$dir/apiserver.port" "$d/apiserver-port"
    echo "$d"
}

make_pki
case $what in
all)
    start_etcd
    start_apiserver
    start_controller_manager
    start_scheduler
    ;;
etcd) start_etcd ;;
apiserver) start_apiserver ;;
controller-manager) start_controller_manager ;;
scheduler) start_scheduler ;;
node)
    make_node "${3:-}"
    exit 0
    ;;
*) die "unknown target $what (all|etcd|apiserver|controller-manager|scheduler)" ;;
esac
echo "$dir/kubeconfig"
