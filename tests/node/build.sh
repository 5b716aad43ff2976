#!/usr/bin/env bash
# Builds the node components of the SR-IOV node tier from Go modules, by name and version,
# with the ordinary `go` command. Two small modules of our own name them:
#
#   tests/node/go.mod          kubelet from k8s.io/kubernetes, pinned exactly as
#                              tests/controlplane/go.mod pins the control plane (same
#                              kubernetes version, same staging pins, same dependency versions,
#                              so Go's build cache of the control plane serves most of it)
#   tests/node/runtime/go.mod  containerd v2 (containerd, containerd-shim-runc-v2, ctr), runc,
#                              and the CNI reference plugins (host-local, static, loopback,
#                              bridge, host-device), in their own build list: putting them
#                              beside the kubelet would raise the kubelet's dependencies (x/sys,
#                              grpc, otel) above the control plane's and rebuild all of it
#
#   tests/node/build.sh        # prints the directory holding the binaries on stdout
#
# Everything is static. The kubelet, containerd and the CNI plugins are built without cgo.
# runc cannot be: its `runc init` runs C code (libcontainer/nsenter) before the Go runtime
# starts. It is built with cgo, linked statically (-extldflags -static), with the tags
# `seccomp urfave_cli_no_docs netgo osusergo` (libseccomp's static library from Debian's
# libseccomp-dev, installed here when missing); runc's optional `libpathrs` tag is left out
# (it needs a Rust library), so runc uses its pure-Go path-resolution fallback.
#
# Multus, sriov-cni and the SR-IOV network device plugin are not built: the Go module proxy
# answers 403 ("This module version is not available") for every version of
# github.com/k8snetworkplumbingwg/{multus-cni,multus-cni/v4,sriov-cni,
# sriov-network-device-plugin} (see README.md beside this script).
#
# The binaries are kept by a stamp of their inputs (both go.mod and go.sum files, this
# script, the Go version) in $BONDNET_NODE_CACHE/<kubernetes version>-<stamp>/bin (default
# ~/.cache/bondnet-node): a second run only checks the stamp. Go's own module and build
# caches are the user's (GOMODCACHE, GOCACHE). BONDNET_GO_JOBS (default 2) is go build -p.
#
# Exit status: 0 built or cached; 2 the node cannot be built here (no Go, the module proxy
# unreachable, a compile error), with the reason on stderr and in target/node/FAILED;
# anything else is a bug in this script.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${BONDNET_NODE_OUT:-$repo/target/node}
cache=${BONDNET_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bondnet-node}
mkdir -p "$out" "$cache"
rm -f "$out/FAILED"
log=$out/build.log

say() { echo "node/build.sh: $*" >&2; }
cannot() {
    say "FAILED: $*"
    printf '%s\n' "$*" >"$out/FAILED"
    exit 2
}

export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || cannot "no go command on PATH (nor in /usr/local/go/bin)"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-buildvcs=false

KUBELET_BINS=(kubelet)
RUNTIME_BINS=(containerd containerd-shim-runc-v2 ctr runc host-local static loopback bridge host-device)

version_of() { # dir module -> the module's version in that go.mod's build list
    (cd "$1" && go list -m -f '{{.Version}}' "$2")
}

# libseccomp.a for the static runc.
need_libseccomp() {
    local a
    for a in /usr/lib/*/libseccomp.a /usr/lib/libseccomp.a; do [[ -f $a ]] && return 0; done
    command -v apt-get >/dev/null || cannot "runc needs libseccomp's static library (libseccomp-dev) and there is no apt-get"
    local sudo=
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || cannot "runc needs libseccomp-dev: not root and no sudo"
        sudo=sudo
    fi
    say "apt-get install libseccomp-dev (runc's static seccomp)"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -qq --no-install-recommends libseccomp-dev >>"$log" 2>&1 ||
        { $sudo apt-get update -qq >>"$log" 2>&1 && $sudo apt-get install -y -qq --no-install-recommends libseccomp-dev >>"$log" 2>&1; } ||
        cannot "apt-get install libseccomp-dev failed (see $log)"
}

gobuild() { # dir what... : go build in dir, into $dir.new/bin, logged
    local dir=$1
    shift
    (cd "$dir" && nice go build -p "${BONDNET_GO_JOBS:-2}" -trimpath "$@") >>"$log" 2>&1 ||
        cannot "go build $* failed: $(grep -m3 -E '\.go:[0-9]+|cannot|error' "$log" | tr '\n' ' ')(full log: $log)"
}

main() {
    local goversion stamp kube containerd runc plugins
    goversion=$(go env GOVERSION) || cannot "go env failed"
    stamp=$(cat "$here/go.mod" "$here/go.sum" "$here/runtime/go.mod" "$here/runtime/go.sum" \
        "$here/build.sh" <(echo "$goversion") | sha256sum | cut -c1-16)
    kube=$(version_of "$here" k8s.io/kubernetes 2>>"$log") || cannot "go list -m failed (see $log): is the Go module proxy reachable?"
    local dir=$cache/$kube-$stamp
    local b missing=0
    for b in "${KUBELET_BINS[@]}" "${RUNTIME_BINS[@]}"; do [[ -x $dir/bin/$b ]] || missing=1; done
    if ((missing == 0)); then
        echo "$dir/bin"
        return 0
    fi
    containerd=$(version_of "$here/runtime" github.com/containerd/containerd/v2 2>>"$log") || cannot "go list -m failed in runtime/ (see $log)"
    runc=$(version_of "$here/runtime" github.com/opencontainers/runc)
    plugins=$(version_of "$here/runtime" github.com/containernetworking/plugins)
    need_libseccomp
    rm -rf "$dir.new"
    mkdir -p "$dir.new/bin"
    : >"$dir.new/TIMES"
    local start=$SECONDS t

    # kubelet: what it reports as its version (its /healthz, the node's status.nodeInfo).
    local minor=${kube#v1.}
    minor=${minor%%.*}
    local ldflags="-s -w" p
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $p.gitVersion=$kube -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    done
    say "building kubelet $kube with $goversion (log in $log)"
    t=$SECONDS
    CGO_ENABLED=0 gobuild "$here" -ldflags "$ldflags" -o "$dir.new/bin/" tool
    echo "kubelet $kube $((SECONDS - t)) s" >>"$dir.new/TIMES"

    say "building containerd $containerd and the CNI plugins $plugins"
    t=$SECONDS
    local cpkg=github.com/containerd/containerd/v2/version
    CGO_ENABLED=0 gobuild "$here/runtime" \
        -ldflags "-s -w -X $cpkg.Version=$containerd -X $cpkg.Revision=module" \
        -o "$dir.new/bin/" \
        github.com/containerd/containerd/v2/cmd/containerd \
        github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
        github.com/containerd/containerd/v2/cmd/ctr
    echo "containerd $containerd $((SECONDS - t)) s" >>"$dir.new/TIMES"
    t=$SECONDS
    CGO_ENABLED=0 gobuild "$here/runtime" \
        -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$plugins" \
        -o "$dir.new/bin/" \
        github.com/containernetworking/plugins/plugins/ipam/host-local \
        github.com/containernetworking/plugins/plugins/ipam/static \
        github.com/containernetworking/plugins/plugins/main/loopback \
        github.com/containernetworking/plugins/plugins/main/bridge \
        github.com/containernetworking/plugins/plugins/main/host-device
    echo "plugins $plugins $((SECONDS - t)) s" >>"$dir.new/TIMES"

    say "building runc $runc (cgo, static, seccomp)"
    t=$SECONDS
    CGO_ENABLED=1 gobuild "$here/runtime" -tags "seccomp urfave_cli_no_docs netgo osusergo" \
        -ldflags "-s -w -X main.gitCommit=module-$runc -extldflags -static" \
        -o "$dir.new/bin/runc" github.com/opencontainers/runc
    echo "runc $runc $((SECONDS - t)) s" >>"$dir.new/TIMES"

    for b in "${KUBELET_BINS[@]}" "${RUNTIME_BINS[@]}"; do
        [[ -x $dir.new/bin/$b ]] || cannot "go build made no $b in $dir.new/bin"
    done
    # Keep one build: the one these inputs make.
    find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$(basename "$dir").new" -exec rm -rf {} +
    mv "$dir.new" "$dir"
    say "built in $((SECONDS - start)) s: $dir/bin"
    echo "$dir/bin"
}

main "$@"
