#!/usr/bin/env bash
# Builds bondnet-apiserver, the CRD-only Kubernetes API server of the real-API-server tier,
# from Debian's packages only, and installs etcd (Debian's etcd-server).
#
#   tests/apiserver/build.sh            # prints the path of the built server on stdout
#
# What it does, in order:
#  1. Adds Debian's unstable and bookworm-backports suites to apt, with the archive URI read
#     from this machine's own apt configuration, and pins both at priority 100 so that nothing
#     already installed is ever upgraded from them.
#  2. Installs etcd-server from the host's own suite (bookworm).
#  3. Resolves golang-k8s-apiextensions-apiserver-dev and its golang-*-dev dependencies in
#     unstable, downloads them and unpacks them under the cache (not installed: their
#     dependency chains would pull unstable's libc onto the host).
#  4. Unpacks a Go toolchain of the version the k8s.io sources declare (their go.mod `go`
#     line), from bookworm-backports when it has it, else from unstable, in the cache as well.
#     bookworm-backports carries Go 1.23 only, and the k8s.io 0.36 sources need packages that
#     first appeared in Go 1.24 (`weak`, `crypto/hkdf`), so today it comes from unstable.
#  5. Compiles tests/apiserver/server (a thin main around the upstream server) in GOPATH
#     mode: GO111MODULE=off, GOPROXY=off, GOPATH = a work dir + the unpacked /usr/share/gocode.
#
# The binary is cached in target/apiserver/ with a stamp of its inputs (the package versions,
# the toolchain, this script and the Go source); a second run with the same inputs only checks.
# The heavy parts (the .debs, the unpacked sources and toolchain, Go's build cache and a copy of
# each binary by stamp) live in $BONDNET_APISERVER_CACHE (default ~/.cache/bondnet-apiserver),
# outside the work tree, so that a fresh clone on the same machine (CI's) needs no recompile.
#
# Exit status: 0 built (or cached); 2 the server cannot be built here, with the reason on
# stderr and in target/apiserver/SKIPPED (the test tier reports it as skipped); anything else
# is a bug in this script.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${BONDNET_APISERVER_OUT:-$repo/target/apiserver}
cache=${BONDNET_APISERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bondnet-apiserver}
bin=$out/bondnet-apiserver
log=$out/build.log
mkdir -p "$out" "$cache"
rm -f "$out/SKIPPED"

say() { echo "apiserver/build.sh: $*" >&2; }
cannot() {
    say "SKIPPED: $*"
    printf '%s\n' "$*" >"$out/SKIPPED"
    exit 2
}

sources_file=/etc/apt/sources.list.d/bondnet-apiserver.sources
prefs_file=/etc/apt/preferences.d/bondnet-apiserver
suite_unstable=unstable
suite_backports=bookworm-backports
root_pkg=golang-k8s-apiextensions-apiserver-dev

# --- 1. apt suites -------------------------------------------------------------------------

# The URI of the host's own Debian suite, from its deb822 sources or its one-line sources.list.
archive_uri() {
    local codename
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f && $f != "$sources_file" ]] || continue
        awk -v want="$codename" '
            /^[[:space:]]*$/ { uri = ""; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == want) hit = 1 }
            hit && uri != "" { print uri; exit }
        ' "$f"
    done | head -n1 | grep . && return 0
    local l
    for l in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $l ]] || continue
        # deb [options] URI suite components...
        sed -E 's/\[[^]]*\]//' "$l" | awk -v want="$codename" '$1 == "deb" && $3 == want { print $2; exit }'
    done | head -n1 | grep .
}

write_if_changed() { # path content -> 0 when it changed
    local path=$1 content=$2
    if [[ -f $path ]] && [[ "$(cat "$path")" == "$content" ]]; then
        return 1
    fi
    printf '%s\n' "$content" >"$path"
}

setup_apt() {
    local uri changed=0
    uri=$(archive_uri) || cannot "no Debian archive URI found in /etc/apt (sources.list or *.sources)"
    if [[ $(id -u) != 0 ]]; then
        [[ -f $sources_file ]] || cannot "adding the $suite_unstable and $suite_backports apt suites needs root"
        return 0
    fi
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    write_if_changed "$sources_file" "# Written by bondnet's tests/apiserver/build.sh: Go sources and toolchain for the API server tier.
Types: deb
URIs: $uri
Suites: $suite_unstable $suite_backports
Components: main
Signed-By: $keyring" && changed=1
    write_if_changed "$prefs_file" "# Written by bondnet's tests/apiserver/build.sh: never upgrade the host from these suites.
Package: *
Pin: release a=$suite_unstable
Pin-Priority: 100

Package: *
Pin: release a=$suite_backports
Pin-Priority: 100" && changed=1
    if ((changed)) || ! apt-cache -o APT::Default-Release=$suite_unstable show "$root_pkg" >/dev/null 2>&1; then
        say "apt-get update ($suite_unstable and $suite_backports added from $uri)"
        apt-get update -qq >>"$log" 2>&1 || cannot "apt-get update failed (see $log)"
    fi
}

# --- 2. etcd -------------------------------------------------------------------------------

install_etcd() {
    command -v etcd >/dev/null && return 0
    [[ $(id -u) == 0 ]] || cannot "etcd is not installed and installing etcd-server needs root"
    say "installing etcd-server"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >>"$log" 2>&1 ||
        cannot "apt-get install etcd-server failed (see $log)"
    command -v etcd >/dev/null || cannot "etcd-server is installed but has no etcd binary on PATH"
}

# --- 3. Go sources -------------------------------------------------------------------------

# "package version" lines for the golang-*-dev closure of $root_pkg in unstable.
source_closure() {
    apt-cache -o APT::Default-Release=$suite_unstable show "$root_pkg" >/dev/null 2>&1 ||
        cannot "package $root_pkg is not in Debian $suite_unstable"
    local pkgs
    pkgs=$(apt-cache -o APT::Default-Release=$suite_unstable depends --recurse --no-recommends \
        --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances --no-pre-depends \
        "$root_pkg" | grep -E '^golang-[a-z0-9.+-]+-dev$' | sort -u)
    [[ -n $pkgs ]] || cannot "apt found no golang-*-dev dependencies of $root_pkg"
    # shellcheck disable=SC2086 # one word per package
    apt-cache -o APT::Default-Release=$suite_unstable policy $pkgs |
        awk '/^[^ ]/ { p = $1; sub(/:$/, "", p) } /Candidate:/ { print p, $2 }'
}

# Downloads (once) and unpacks the closure into $cache/root.
unpack_sources() {
    local closure=$1
    mkdir -p "$cache/debs"
    local missing=()
    local p v f
    while read -r p v; do
        f=$(ls "$cache/debs/${p}_${v//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
        [[ -n $f ]] || missing+=("$p=$v")
    done <<<"$closure"
    if ((${#missing[@]})); then
        say "downloading ${#missing[@]} Go source packages from $suite_unstable"
        (cd "$cache/debs" && apt-get download "${missing[@]}" >>"$log" 2>&1) ||
            cannot "apt-get download of the Go sources failed (see $log): ${missing[*]:0:5}..."
    fi
    rm -rf "$cache/root"
    mkdir -p "$cache/root"
    while read -r p v; do
        f=$(ls "$cache/debs/${p}_${v//:/%3a}_"*.deb | head -n1)
        dpkg-deb -x "$f" "$cache/root"
    done <<<"$closure"
}

# --- 4. Go toolchain -----------------------------------------------------------------------

# The Go version the apiextensions-apiserver sources declare, as MAJOR.MINOR.
wanted_go() {
    local mod=$cache/root/usr/share/gocode/src/k8s.io/apiextensions-apiserver/go.mod
    [[ -f $mod ]] || cannot "$root_pkg has no go.mod at k8s.io/apiextensions-apiserver"
    awk '$1 == "go" { split($2, v, "."); print v[1] "." v[2]; exit }' "$mod"
}

# Unpacks golang-$1-go (+ -src) from backports, else unstable; prints GOROOT.
unpack_toolchain() {
    local want=$1 suite pkg=golang-$1-go
    for suite in $suite_backports $suite_unstable; do
        if apt-cache -o APT::Default-Release=$suite policy "$pkg" 2>/dev/null | grep -q "$suite/main"; then
            local dir=$cache/go-$want
            if [[ ! -x $dir/usr/lib/go-$want/bin/go ]]; then
                if [[ $suite == "$suite_backports" ]]; then
                    say "unpacking $pkg from $suite"
                else
                    say "unpacking $pkg from $suite: $suite_backports has no Go $want, which the sources declare"
                fi
                rm -rf "$dir" "$cache/go-debs"
                mkdir -p "$dir" "$cache/go-debs"
                (cd "$cache/go-debs" && apt-get download "$pkg/$suite" "golang-$want-src/$suite" >>"$log" 2>&1) ||
                    cannot "apt-get download $pkg from $suite failed (see $log)"
                local d
                for d in "$cache"/go-debs/*.deb; do dpkg-deb -x "$d" "$dir"; done
            fi
            [[ -x $dir/usr/lib/go-$want/bin/go ]] || cannot "$pkg from $suite has no usr/lib/go-$want/bin/go"
            echo "$dir/usr/lib/go-$want"
            return 0
        fi
    done
    cannot "no Go $want toolchain ($pkg) in $suite_backports or $suite_unstable; the k8s.io sources declare go $want"
}

# --- 5. compile ----------------------------------------------------------------------------

main() {
    : >"$log"
    setup_apt
    install_etcd
    local closure
    closure=$(source_closure)
    local stamp
    stamp=$(
        {
            echo "$closure"
            cat "$here/build.sh" "$here"/server/*.go
        } | sha256sum | cut -d' ' -f1
    )
    if [[ -x $bin && -f $out/stamp && $(cat "$out/stamp") == "$stamp" ]]; then
        echo "$bin"
        return 0
    fi
    if [[ -x $cache/bin/$stamp ]]; then
        cp "$cache/bin/$stamp" "$bin"
        echo "$stamp" >"$out/stamp"
        say "reused $cache/bin/$stamp"
        echo "$bin"
        return 0
    fi
    unpack_sources "$closure"
    local want goroot
    want=$(wanted_go)
    goroot=$(unpack_toolchain "$want")
    say "compiling with $("$goroot/bin/go" version | cut -d' ' -f3) in GOPATH mode (this takes a while: log in $log)"
    local start=$SECONDS
    if ! (
        cd "$here/server"
        export GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0
        export GOROOT=$goroot GOPATH=$cache/work:$cache/root/usr/share/gocode GOCACHE=$cache/gocache
        nice "$goroot/bin/go" build -trimpath -o "$bin.new" .
    ) >>"$log" 2>&1; then
        cannot "compile error building k8s.io/apiextensions-apiserver from Debian's packages: $(grep -m3 -E '\.go:[0-9]+|cannot find package' "$log" | tr '\n' ' ')(full log: $log)"
    fi
    # Keep one binary in the cache: the one these inputs make.
    rm -rf "$cache/bin"
    mkdir -p "$cache/bin"
    cp "$bin.new" "$cache/bin/$stamp"
    mv "$bin.new" "$bin"
    echo "$stamp" >"$out/stamp"
    say "built $bin in $((SECONDS - start)) s"
    echo "$bin"
}

main "$@"
