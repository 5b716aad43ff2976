#!/usr/bin/env bash
# Builds the real control plane of the API server tier from Go modules, by name and version,
# with the ordinary `go` command: kube-apiserver, kube-controller-manager, kube-scheduler and
# kubectl from k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, helm from
# helm.sh/helm/v3. The versions are the ones go.mod beside this script names (its `tool`
# lines); k8s.io/kubernetes replaces its k8s.io/* staging modules with local paths, so go.mod
# pins each of them to the matching v0.N.x release. Nothing is vendored or copied.
#
#   tests/controlplane/build.sh        # prints the directory holding the binaries on stdout
#
# The binaries are kept by a stamp of their inputs (go.mod, go.sum, this script, the Go
# version) in $BONDNET_CONTROLPLANE_CACHE/<kubernetes version>-<stamp>/bin (default
# ~/.cache/bondnet-controlplane): a second run only checks the stamp. Go's own module and
# build caches are the user's (GOMODCACHE, GOCACHE).
#
# Exit status: 0 built or cached; 2 the control plane cannot be built here (no Go, the module
# proxy unreachable, a compile error), with the reason on stderr and in
# target/controlplane/FAILED; anything else is a bug in this script.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${BONDNET_CONTROLPLANE_OUT:-$repo/target/controlplane}
cache=${BONDNET_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bondnet-controlplane}
mkdir -p "$out" "$cache"
rm -f "$out/FAILED"
log=$out/build.log

say() { echo "controlplane/build.sh: $*" >&2; }
cannot() {
    say "FAILED: $*"
    printf '%s\n' "$*" >"$out/FAILED"
    exit 2
}

export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || cannot "no go command on PATH (nor in /usr/local/go/bin)"
# The toolchain go.mod asks for is taken as any module (GOTOOLCHAIN=auto would fetch it too,
# but naming it keeps the run the same on every machine).
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-buildvcs=false CGO_ENABLED=0

version_of() { # module -> its version in go.mod's build list
    (cd "$here" && go list -m -f '{{.Version}}' "$1")
}

main() {
    local goversion stamp kube helm etcd
    goversion=$(go env GOVERSION) || cannot "go env failed"
    stamp=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" <(echo "$goversion") | sha256sum | cut -c1-16)
    kube=$(version_of k8s.io/kubernetes 2>>"$log") || cannot "go list -m failed (see $log): is the Go module proxy reachable?"
    local dir=$cache/$kube-$stamp
    local bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd helm)
    local b missing=0
    for b in "${bins[@]}"; do [[ -x $dir/bin/$b ]] || missing=1; done
    if ((missing == 0)); then
        echo "$dir/bin"
        return 0
    fi
    helm=$(version_of helm.sh/helm/v3)
    etcd=$(version_of go.etcd.io/etcd/server/v3)
    local minor=${kube#v1.}
    minor=${minor%%.*}
    # What the binaries report as their version: the API server's /version (which helm checks
    # against a chart's kubeVersion) and the clients' user agents.
    local ldflags="-s -w"
    local p
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $p.gitVersion=$kube -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    done
    ldflags+=" -X helm.sh/helm/v3/internal/version.version=$helm"
    say "building kubernetes $kube (apiserver, controller-manager, scheduler, kubectl), etcd $etcd and helm $helm with $goversion; cold this takes long (log in $log)"
    rm -rf "$dir.new"
    mkdir -p "$dir.new/bin"
    local start=$SECONDS
    if ! (cd "$here" && nice go build -p "${BONDNET_GO_JOBS:-2}" -trimpath -ldflags "$ldflags" -o "$dir.new/bin/" tool) >>"$log" 2>&1; then
        cannot "go build failed: $(grep -m3 -E '\.go:[0-9]+|cannot|error' "$log" | tr '\n' ' ')(full log: $log)"
    fi
    # go.etcd.io/etcd/server/v3's main package is named after its module's last element.
    mv "$dir.new/bin/server" "$dir.new/bin/etcd"
    for b in "${bins[@]}"; do
        [[ -x $dir.new/bin/$b ]] || cannot "go build made no $b in $dir.new/bin"
    done
    # Keep one build: the one these inputs make.
    find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$(basename "$dir").new" -exec rm -rf {} +
    mv "$dir.new" "$dir"
    say "built in $((SECONDS - start)) s: $dir/bin"
    echo "$dir/bin"
}

main "$@"
