# Sourced by the scripts that put this machine's binaries into a guest or an image
# (build-image.sh, run.sh, tests/node/images.sh): a dynamically linked binary needs the
# libraries ldd names, at the same paths, and the dynamic loader.

# copy_libs ROOT BINARY: installs BINARY's libraries and loader under ROOT (those already
# there are kept).
copy_libs() {
    local root="$1" bin="$2" lib
    { ldd "$bin" 2>/dev/null || true; } | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' | while read -r lib; do
        [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done
}

# copy_with_libs ROOT BINARY DEST: installs BINARY as ROOT/DEST, with its libraries.
copy_with_libs() {
    install -D -m 0755 "$2" "$1$3"
    copy_libs "$1" "$2"
}
