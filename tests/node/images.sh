#!/usr/bin/env bash
# The images the SR-IOV node runs, as OCI archives (tests/node/oci-image.sh), from binaries
# on this machine: no daemon, no registry.
#
#   tests/node/images.sh OUTDIR BONDNET BOND
#
#   pause:test    the pod sandbox: busybox-static's sh waiting for SIGTERM (the real pause is
#                 a C program of the Kubernetes tree, not a Go package, so it is not built here)
#   bondnet:test  what the Dockerfile's image holds, at the same paths: BONDNET as
#                 /usr/local/bin/bondnet and BOND as /usr/local/bin/bond (static, from
#                 scripts/build-bond.sh, as the Dockerfile builds it), with the glibc
#                 libraries BONDNET links (the Dockerfile links it statically against musl
#                 too; here it is the workspace's debug build), user 65532 as in the Dockerfile
#
# Prints the images' names and digests.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: images.sh OUTDIR BONDNET BOND}
bondnet=${2:?bondnet binary}
bond=${3:?bond binary}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

busybox=$(command -v busybox || echo /bin/busybox)
file -L "$busybox" | grep -q 'statically linked' || { echo "images.sh: $busybox is not static (install busybox-static)" >&2; exit 2; }

. "$here/../vm/copy-with-libs.sh"

mkdir -p "$work/pause/bin"
cp "$busybox" "$work/pause/bin/busybox"
ln -s busybox "$work/pause/bin/sh"
ln -s busybox "$work/pause/bin/sleep"
"$here/oci-image.sh" "$out/pause.tar" pause:test "$work/pause" \
    '["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait; done"]'

mkdir -p "$work/bondnet/tmp"
copy_with_libs "$work/bondnet" "$bondnet" /usr/local/bin/bondnet
copy_with_libs "$work/bondnet" "$bond" /usr/local/bin/bond
# A debug build's debug info is most of its size; the node does not need it. (bond stays
# byte for byte what was built: the agent installs it, and the tests compare the two.)
strip --strip-debug "$work/bondnet/usr/local/bin/bondnet"
"$here/oci-image.sh" "$out/bondnet.tar" bondnet:test "$work/bondnet" '["/usr/local/bin/bondnet"]' 65532:65532
