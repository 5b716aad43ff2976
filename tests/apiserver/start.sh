#!/usr/bin/env bash
# Starts etcd and bondnet-apiserver on loopback, with TLS and client-certificate auth.
#
#   tests/apiserver/start.sh DIR [all|server]   # default: all
#   tests/apiserver/stop.sh  DIR [all|server]
#
# DIR holds everything: pki/ (a throwaway CA, the serving certificate for 127.0.0.1 and a
# client certificate in group system:masters, made with openssl), etcd/ (the data), the logs,
# the pids, the ports, and DIR/kubeconfig for clients. `server` (re)starts only the API server,
# on the same port, over the same etcd: the restart test uses it. Ports are random free ports
# (override with BONDNET_ETCD_PORT / BONDNET_APISERVER_PORT). The server binary is the one
# build.sh made (override with BONDNET_APISERVER_BIN).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${1:?usage: start.sh DIR [all|server]}
what=${2:-all}
bin=${BONDNET_APISERVER_BIN:-$repo/target/apiserver/bondnet-apiserver}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

say() { echo "apiserver/start.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

[[ -x $bin ]] || die "no server binary at $bin: run tests/apiserver/build.sh first"
command -v etcd >/dev/null || die "no etcd on PATH: run tests/apiserver/build.sh first"

# A port nothing listens on now (connect refused).
free_port() {
    local p i
    for i in $(seq 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

port_of() { # name default-env
    local f=$dir/$1.port
    if [[ ! -f $f ]]; then
        echo "${2:-$(free_port)}" >"$f"
    fi
    cat "$f"
}

alive() { [[ -f $dir/$1.pid ]] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

make_pki() {
    local pki=$dir/pki
    [[ -f $pki/client.key ]] && return 0
    mkdir -p "$pki"
    (
        cd "$pki"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -keyout ca.key -out ca.crt -subj "/CN=bondnet-test-ca" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout server.key -out server.csr -subj "/CN=bondnet-apiserver"
        printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out server.crt
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout client.key.ec -out client.csr -subj "/O=system:masters/CN=bondnet-test"
        openssl pkcs8 -topk8 -nocrypt -in client.key.ec -out client.key
        printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=clientAuth" >client.ext
        openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile client.ext -out client.crt
    ) >"$dir/pki.log" 2>&1 || die "openssl failed: see $dir/pki.log"
}

write_kubeconfig() {
    local port=$1 pki=$dir/pki
    cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: bondnet-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: bondnet-test
  user:
    client-certificate-data: $(base64 -w0 "$pki/client.crt")
    client-key-data: $(base64 -w0 "$pki/client.key")
contexts:
- name: bondnet-test
  context:
    cluster: bondnet-test
    user: bondnet-test
    namespace: default
current-context: bondnet-test
EOF
}

start_etcd() {
    alive etcd && return 0
    local port peer
    port=$(port_of etcd "${BONDNET_ETCD_PORT:-}")
    peer=$(port_of etcd-peer)
    setsid etcd --name bondnet-test --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "bondnet-test=http://127.0.0.1:$peer" \
        </dev/null >>"$dir/etcd.log" 2>&1 &
    echo $! >"$dir/etcd.pid"
    local i
    for i in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        alive etcd || die "etcd exited: see $dir/etcd.log"
        sleep 0.1
    done
    die "etcd did not listen on $port within 10 s: see $dir/etcd.log"
}

start_server() {
    alive apiserver && return 0
    local port etcd_port pki=$dir/pki
    port=$(port_of apiserver "${BONDNET_APISERVER_PORT:-}")
    etcd_port=$(cat "$dir/etcd.port")
    setsid "$bin" --etcd-servers "http://127.0.0.1:$etcd_port" \
        --bind-address 127.0.0.1 --secure-port "$port" \
        --tls-cert-file "$pki/server.crt" --tls-private-key-file "$pki/server.key" \
        --client-ca-file "$pki/ca.crt" ${BONDNET_APISERVER_ARGS:-} \
        </dev/null >>"$dir/apiserver.log" 2>&1 &
    echo $! >"$dir/apiserver.pid"
    write_kubeconfig "$port"
    # Ready when /readyz answers ok to the test's client certificate.
    local i
    for i in $(seq 600); do
        if curl -sf --cacert "$pki/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key" \
            "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
            return 0
        fi
        alive apiserver || die "bondnet-apiserver exited: see $dir/apiserver.log ($(tail -n3 "$dir/apiserver.log" | tr '\n' ' '))"
        sleep 0.1
    done
    die "bondnet-apiserver not ready within 60 s: see $dir/apiserver.log"
}

case $what in
all)
    make_pki
    start_etcd
    start_server
    ;;
server) start_server ;;
*) die "unknown target $what (all|server)" ;;
esac
echo "$dir/kubeconfig"
