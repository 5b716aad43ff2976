#!/usr/bin/env bash
# Writes a container image as an OCI image layout in a tar archive, without a container
# daemon or a registry: one uncompressed layer (a tar of ROOTFS), the image config, the
# manifest and index.json, every blob named by its sha256. `ctr images import` loads it.
#
#   tests/node/oci-image.sh OUT.tar NAME:TAG ROOTFS ENTRYPOINT_JSON [USER]
#
#   OUT.tar          the archive to write
#   NAME:TAG         the image's name as pods name it (`bondnet:test` is stored as
#                    docker.io/library/bondnet:test, which is what the kubelet asks for)
#   ROOTFS           a directory: the image's whole file system
#   ENTRYPOINT_JSON  the entrypoint as a JSON array, e.g. '["/usr/local/bin/bondnet"]'
#   USER             uid:gid the process runs as (default 0:0)
#
# The layer is reproducible: entries sorted, owned by 0:0, mtime 0, so the same ROOTFS gives
# the same digests. Needs tar, sha256sum and jq.
set -euo pipefail

out=${1:?usage: oci-image.sh OUT.tar NAME:TAG ROOTFS ENTRYPOINT_JSON [USER]}
name=${2:?name:tag}
rootfs=${3:?rootfs}
entrypoint=${4:?entrypoint json}
user=${5:-0:0}
[[ -d $rootfs ]] || { echo "oci-image.sh: $rootfs is not a directory" >&2; exit 2; }
jq -e 'type == "array"' <<<"$entrypoint" >/dev/null || { echo "oci-image.sh: entrypoint must be a JSON array" >&2; exit 2; }

# A name without a registry is Docker Hub's library image, as the kubelet resolves it.
if [[ $name != */* ]]; then
    full=docker.io/library/$name
elif [[ ${name%%/*} == *.* || ${name%%/*} == *:* || ${name%%/*} == localhost ]]; then
    full=$name
else
    full=docker.io/$name
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/blobs/sha256"

blob() { # file -> its digest, the file moved under blobs/
    local d
    d=$(sha256sum "$1" | cut -d' ' -f1)
    mv "$1" "$work/blobs/sha256/$d"
    echo "$d"
}
size() { stat -c %s "$work/blobs/sha256/$1"; }

tar -C "$rootfs" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
    --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -cf "$work/layer" .
layer=$(blob "$work/layer")

jq -n --arg diff "sha256:$layer" --argjson entrypoint "$entrypoint" --arg user "$user" '{
    architecture: "amd64", os: "linux",
    config: {
        Entrypoint: $entrypoint, User: $user, WorkingDir: "/",
        Env: ["PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"]
    },
    rootfs: {type: "layers", diff_ids: [$diff]}
}' >"$work/config"
config=$(blob "$work/config")

jq -n --arg config "sha256:$config" --argjson csize "$(size "$config")" \
    --arg layer "sha256:$layer" --argjson lsize "$(size "$layer")" '{
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $config, size: $csize},
    layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $layer, size: $lsize}]
}' >"$work/manifest"
manifest=$(blob "$work/manifest")

jq -n --arg manifest "sha256:$manifest" --argjson msize "$(size "$manifest")" \
    --arg full "$full" --arg tag "${name##*:}" '{
    schemaVersion: 2,
    manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: $manifest, size: $msize,
        platform: {architecture: "amd64", os: "linux"},
        annotations: {"io.containerd.image.name": $full, "org.opencontainers.image.ref.name": $tag}
    }]
}' >"$work/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"

tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$out.new" oci-layout index.json blobs
mv "$out.new" "$out"
echo "$full sha256:$manifest"
