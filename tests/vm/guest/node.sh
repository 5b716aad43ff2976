#!/bin/sh
# The SR-IOV node (run.sh --node): the guest becomes a Kubernetes node of the control plane
# that runs on the host. QEMU's igb PFs give real VFs; containerd, runc and the kubelet (built
# from their Go modules by tests/node/build.sh) come from a read-only virtio disk; the node
# reaches the API server only through QEMU's user network, whose guestfwd sends
# 10.0.2.100:443 to the API server on the host's loopback (restrict=on: nothing else leaves
# the guest).
#
# Stage 1 runs as PID 1 in the initramfs: runc's pivot_root cannot leave the initramfs (the
# kernel refuses to pivot away from rootfs), so the tree moves to a tmpfs and PID 1 switches
# root to it, as a real node boots from a real file system. Stage 2 is the node: modules,
# cgroup2, the management NIC, VFs on every PF, containerd with the images of the disk, the
# kubelet. It then reports on the console, one line per event (`NODE <what> ...`), and runs
# until qemu is stopped. Files from the host (kubeconfig, CA, node name) are in /bondnet/node.
export PATH=/node/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/cni/bin
IP=/usr/sbin/ip
CFG=/bondnet/node

fail() {
    echo "NODE FAIL $*"
    echo "BONDNET-DONE"
    poweroff -f
    exit 1
}

if [ "${1:-}" != stage2 ]; then
    mkdir -p /newroot
    mount -t tmpfs -o mode=0755,size=90% tmpfs /newroot || fail "tmpfs for the new root"
    for d in bin sbin usr lib lib64 etc opt bondnet root var; do
        [ -e "/$d" ] && cp -a "/$d" /newroot/
    done
    for d in proc sys dev run tmp; do
        mkdir -p "/newroot/$d"
        mount --move "/$d" "/newroot/$d" || fail "mount --move /$d"
    done
    exec switch_root /newroot /bin/sh /bondnet/node.sh stage2
fi

# --- stage 2: the node ------------------------------------------------------------------
NODE=$(cat $CFG/node-name)
NUMVFS=$(cat $CFG/numvfs 2>/dev/null || echo 4)
echo "NODE STAGE2 $NODE"
mkdir -p /node /var/lib/containerd /var/lib/kubelet /var/log/pods /etc/kubernetes /etc/cni/net.d \
    /run/containerd /var/lib/bondnet /var/lib/cni
modprobe_all() {
    local m
    for m in "$@"; do
        modprobe "$m" || fail "modprobe $m"
    done
}
# crc32c first: libcrc32c (nf_tables) and ext4 ask the crypto API for it, a dependency
# modules.dep does not list.
modprobe_all crc32c_generic virtio_pci virtio_blk virtio_net ext4 overlay br_netfilter \
    nf_tables nft_compat nft_chain_nat nf_nat nf_conntrack xt_nat xt_tcpudp xt_conntrack xt_MASQUERADE \
    dca i2c-algo-bit igb igbvf

mount -t cgroup2 none /sys/fs/cgroup || fail "mount cgroup2"
echo "+cpuset +cpu +io +memory +pids +hugetlb" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null ||
    echo "+cpu +io +memory +pids" >/sys/fs/cgroup/cgroup.subtree_control
mount -o ro /dev/vda /node || fail "mount the node disk /dev/vda"
echo 1 >/proc/sys/net/ipv4/ip_forward || fail "ip_forward"
echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables || fail "bridge-nf-call-iptables"

link_base() {
    [ -L "$1" ] || return 0
    basename "$(readlink "$1")"
}
nic_of_driver() {
    local n
    for n in /sys/class/net/*; do
        [ "$(link_base "$n/device/driver")" = "$1" ] && basename "$n"
    done
}

# The management NIC (virtio) gets QEMU's user-network address; its gateway is 10.0.2.2.
i=0
while [ -z "$(nic_of_driver virtio_net)" ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
MGMT=$(nic_of_driver virtio_net | head -n1)
[ -n "$MGMT" ] || fail "no virtio NIC"
$IP link set lo up
$IP link set "$MGMT" up
$IP addr add 10.0.2.15/24 dev "$MGMT"
$IP route add default via 10.0.2.2 dev "$MGMT"
echo "nameserver 10.0.2.3" >/etc/resolv.conf
echo "127.0.0.1 localhost $NODE" >/etc/hosts
echo "$NODE" >/etc/hostname
hostname "$NODE"

# In-cluster clients (the agent, in a pod) dial the `kubernetes` Service, 10.96.0.1:443.
# There is no kube-proxy here: a DNAT rule per hook sends it where the guestfwd listens
# (what kube-proxy would do), and pod traffic leaving by the management NIC is masqueraded
# (what a CNI's ipMasq would do).
for chain in PREROUTING OUTPUT; do
    iptables -t nat -A $chain -d 10.96.0.1/32 -p tcp --dport 443 -j DNAT --to-destination 10.0.2.100:443 ||
        fail "iptables DNAT ($chain) for the kubernetes Service"
done
iptables -t nat -A POSTROUTING -s 10.244.0.0/24 -o "$MGMT" -j MASQUERADE || fail "iptables MASQUERADE for pods"

# Real VFs on every PF, as an SR-IOV node's boot configures them.
i=0
while [ "$(nic_of_driver igb | wc -l)" -lt 2 ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
for pf in $(nic_of_driver igb); do
    echo "$NUMVFS" >/sys/class/net/$pf/device/sriov_numvfs || fail "sriov_numvfs on $pf"
    echo "NODE PF $pf $(link_base /sys/class/net/$pf/device) vfs $(cat /sys/class/net/$pf/device/sriov_numvfs)"
done

# The pod network of the node's own pods: a bridge with host-local addresses.
cat >/etc/cni/net.d/10-pods.conflist <<'EOF'
{"cniVersion": "1.0.0", "name": "pods", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]]}},
  {"type": "loopback"}]}
EOF
mkdir -p /opt/cni/bin
for p in host-local static loopback bridge host-device; do cp /node/cni/$p /opt/cni/bin/; done

# containerd: the CRI plugin, runc with cgroupfs, the native snapshotter (the root is a tmpfs),
# the disk's pause image as the sandbox, nothing pulled from anywhere.
mkdir -p /etc/containerd
cat >/etc/containerd/config.toml <<'EOF'
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "native"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "docker.io/library/pause:test"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    SystemdCgroup = false
EOF
containerd >/var/log/containerd.log 2>&1 &
containerd_pid=$!
i=0
until ctr version >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 300 ] || { tail -n 20 /var/log/containerd.log; fail "containerd did not answer within 60 s"; }
    sleep 0.2
done
# --local: the client unpacks for the snapshotter named here (the transfer service would
# unpack only for the snapshotters of its own unpack config).
for image in /node/images/*.tar; do
    ctr -n k8s.io images import --local --platform linux/amd64 --snapshotter native "$image" >/dev/null || fail "ctr images import $image"
done
echo "NODE IMAGES $(ctr -n k8s.io images ls -q | grep -v '^sha256:' | tr '\n' ' ')"

cat >/etc/kubernetes/kubelet.yaml <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $CFG/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
failSwapOn: false
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
clusterDNS: [10.96.0.10]
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 1Mi, nodefs.available: 1%, imagefs.available: 1%}
nodeStatusUpdateFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 5s
EOF
kubelet --config /etc/kubernetes/kubelet.yaml --kubeconfig $CFG/kubelet.kubeconfig \
    --hostname-override "$NODE" --node-ip 10.0.2.15 --v 1 >/var/log/kubelet.log 2>&1 &
kubelet_pid=$!
echo "NODE KUBELET started"

# Report what the tests look for, each once when it changes: the plugin the agent installs,
# the device plugin's config the agent renders.
last_bond=""
last_dp=""
n=0
while :; do
    sleep 2
    n=$((n + 1))
    if [ -x /opt/cni/bin/bond ]; then
        s=$(sha256sum /opt/cni/bin/bond | cut -c1-16)
        [ "$s" = "$last_bond" ] || echo "NODE CNI-BIN bond $s"
        last_bond=$s
    fi
    f=/var/lib/bondnet/device-plugin/config.json
    if [ -f $f ]; then
        s=$(sha256sum $f | cut -c1-16)
        [ "$s" = "$last_dp" ] || echo "NODE DEVICE-PLUGIN-CONFIG $s $(jq -c '[.resourceList[]?.resourceName]' $f 2>/dev/null)"
        last_dp=$s
    fi
    kill -0 $kubelet_pid 2>/dev/null || { tail -n 30 /var/log/kubelet.log; fail "the kubelet exited"; }
    kill -0 $containerd_pid 2>/dev/null || { tail -n 30 /var/log/containerd.log; fail "containerd exited"; }
    if [ -e /bondnet/verbose ] && [ $((n % 30)) -eq 0 ]; then
        echo "--- kubelet log tail"
        tail -n 5 /var/log/kubelet.log
        iptables -t nat -L -n -v 2>&1 | grep -v '^$'
        for p in /proc/[0-9]*; do
            if tr '\0' ' ' <$p/cmdline 2>/dev/null | grep -q '^/usr/local/bin/bondnet agent'; then
                echo "agent env: $(tr '\0' '\n' <$p/environ | grep KUBERNETES | tr '\n' ' ')"
            fi
        done
        for f in /var/log/pods/*/*/*.log; do
            [ -f "$f" ] || continue
            echo "--- $f"
            tail -n 10 "$f"
        done
    fi
done
