#!/usr/bin/env bash
# Builds the integration-test images locally (no registry is reachable) and reuses them when present.
#
#   sandbox-test/tools:latest   host client binaries + their ldd libraries (~15 MB, < 1 s)
#   sandbox-test/base:bookworm  Debian minbase + python3, X11/pulse/wayland clients (the runtime
#                               image apps build FROM; debootstrap, ~1-2 min the first time)
#
# Usage: images.sh [tools|base|all] [--podman]   (default: all; --podman also imports tools into
# the Podman store so tests against the Podman API service find it).
# Root filesystems are cached as tarballs in $SANDBOX_IMAGE_CACHE (default /var/cache/sandbox-test)
# so a wiped engine re-imports in seconds. Bump RECIPE when a recipe changes: images and tarballs
# carry it, and an old one is rebuilt.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/hostlib.sh
source "$HERE/hostlib.sh"

RECIPE=1
TOOLS_IMAGE=${SANDBOX_TEST_TOOLS_IMAGE:-sandbox-test/tools:latest}
BASE_IMAGE=${SANDBOX_TEST_BASE_IMAGE:-sandbox-test/base:bookworm}
CACHE=${SANDBOX_IMAGE_CACHE:-/var/cache/sandbox-test}
SUITE=bookworm
BASE_PACKAGES=python3,python3-xlib,x11-utils,x11-apps,xdotool,pulseaudio-utils,wayland-utils,sox,procps,iproute2,ca-certificates
TOOL_BINARIES=(sh dash cat ls sleep id stat head grep mount env ps xdpyinfo xwininfo xprop xwd
    xeyes xdotool paplay parecord pacat pactl wayland-info)

WORKDIRS=()
cleanup() { local d; for d in "${WORKDIRS[@]}"; do rm -rf "$d" "$d".*; done; }
trap cleanup EXIT

log() { printf 'images: %s\n' "$*" >&2; }
die() { printf 'images: error: %s\n' "$*" >&2; exit 1; }

# The labels every test image carries; the recipe label lets a changed recipe replace the image.
label_changes() {
    local title=$1 description=$2
    printf '%s\n' \
        "LABEL org.opencontainers.image.title=\"$title\"" \
        "LABEL org.opencontainers.image.description=\"$description\"" \
        "LABEL org.opencontainers.image.vendor=\"sandbox integration tests\"" \
        "LABEL org.opencontainers.image.source=integration/images.sh" \
        "LABEL org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        "LABEL org.sandbox-test.recipe=$RECIPE"
}

image_current() {  # image exists and was built by this recipe
    local engine=$1 image=$2 got
    got=$("$engine" image inspect --format '{{ index .Config.Labels "org.sandbox-test.recipe" }}' \
        "$image" 2>/dev/null) || return 1
    [[ $got == "$RECIPE" ]]
}

import_tar() {  # engine tarball image title description cmd-json [extra --change lines...]
    local engine=$1 tarball=$2 image=$3 title=$4 description=$5 cmd=$6
    shift 6
    local -a changes=()
    local line
    while IFS= read -r line; do changes+=(--change "$line"); done < <(label_changes "$title" "$description")
    for line in "CMD $cmd" "$@"; do changes+=(--change "$line"); done
    [[ $engine == podman ]] && changes+=(--quiet)
    "$engine" import "${changes[@]}" "$tarball" "$image" >/dev/null
}

# Copy a file (binary or library) into the rootfs at its canonical path, and recreate the path it
# was named by as a symlink when that differs (sonames, merged /usr, paplay -> pacat).
copy_file() {
    local root=$1 path=$2 real dir named
    real=$(readlink -f "$path")
    [[ -e $root$real ]] || { mkdir -p "$root$(dirname "$real")"; cp -p "$real" "$root$real"; }
    dir=$(readlink -f "$(dirname "$path")")
    named=$dir/$(basename "$path")
    if [[ $named != "$real" && ! -e $root$named && ! -L $root$named ]]; then
        mkdir -p "$root$dir"
        ln -s "$real" "$root$named"
    fi
}

build_tools_rootfs() {
    local root=$1 bin path lib
    # Merged /usr, as on the host, so every path an ELF names resolves the same way inside.
    mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/{etc,tmp,home/app,run,proc,sys,dev,root}
    for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
    local -A libs=()
    for bin in "${TOOL_BINARIES[@]}"; do
        path=$(command -v "$bin") || die "tools image needs '$bin' on the host (run harness.sh install)"
        copy_file "$root" "$path"
        while read -r lib; do libs[$lib]=1; done < <(ldd "$path" 2>/dev/null \
            | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
    done
    for lib in "${!libs[@]}"; do copy_file "$root" "$lib"; done
    # Client-side data the X and pulse clients read at run time.
    for d in /usr/share/X11/xkb /usr/share/X11/locale /usr/lib/locale/C.utf8; do
        if [[ -d $d ]]; then mkdir -p "$root$(dirname "$d")"; cp -a "$(readlink -f "$d")" "$root$d"; fi
    done
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
audio:x:29:app
video:x:44:app
render:x:105:app
app:x:1000:
nogroup:x:65534:
EOF
    printf 'passwd: files\ngroup: files\nhosts: files\n' >"$root/etc/nsswitch.conf"
    # No autospawn: a test must reach the server it was given, never start its own.
    printf 'autospawn = no\n' >"$root/etc/pulse-client.conf"
    mkdir -p "$root/etc/pulse"
    mv "$root/etc/pulse-client.conf" "$root/etc/pulse/client.conf"
    printf '0123456789abcdef0123456789abcdef\n' >"$root/etc/machine-id"
    chown 1000:1000 "$root/home/app"
    chmod 1777 "$root/tmp"
    chmod 0700 "$root/root"
}

build_base_rootfs() {
    local root=$1 mirror
    mirror=$(debian_mirror)
    log "debootstrap $SUITE from $mirror (packages: $BASE_PACKAGES)"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$root" "$mirror" \
        >"$root.debootstrap.log" 2>&1 \
        || { tail -n 30 "$root.debootstrap.log" >&2; die "debootstrap failed (log above)"; }
    chroot "$root" useradd --uid 1000 --create-home --shell /bin/sh app
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root.debootstrap.log"
    : >"$root/etc/machine-id"
}


# ensure ENGINE IMAGE NAME TITLE DESCRIPTION CMD BUILDER [extra changes...]
ensure() {
    local engine=$1 image=$2 name=$3 title=$4 description=$5 cmd=$6 builder=$7
    shift 7
    if image_current "$engine" "$image"; then
        log "$image present in $engine (recipe $RECIPE)"
        return 0
    fi
    local tarball=$CACHE/$name-r$RECIPE.tar start=$SECONDS
    if [[ ! -s $tarball ]]; then
        mkdir -p "$CACHE"
        local work
        work=$(mktemp -d "${TMPDIR:-/var/tmp}/sandbox-image.XXXXXX")
        WORKDIRS+=("$work")
        "$builder" "$work/rootfs"
        tar --numeric-owner -C "$work/rootfs" -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$work"
        rm -f "$CACHE/$name"-r*.tar.part
        log "$name rootfs built in $((SECONDS - start)) s ($(du -h "$tarball" | cut -f1))"
    fi
    import_tar "$engine" "$tarball" "$image" "$title" "$description" "$cmd" "$@"
    log "$image imported into $engine ($((SECONDS - start)) s total)"
}

build_tools_into() {
    mkdir -p "$1"
    build_tools_rootfs "$1"
}

build_base_into() {
    build_base_rootfs "$1"
}

main() {
    local what=all podman=0 arg
    for arg in "$@"; do
        case $arg in
            tools|base|all) what=$arg ;;
            --podman) podman=1 ;;
            *) die "unknown argument '$arg' (usage: images.sh [tools|base|all] [--podman])" ;;
        esac
    done
    [[ $(id -u) == 0 ]] || die "run as root (debootstrap, chown to uid 1000)"
    if [[ $what == tools || $what == all ]]; then
        ensure docker "$TOOLS_IMAGE" tools "sandbox-test tools" \
            "Host X11, PulseAudio and Wayland client binaries for integration tests" \
            '["/bin/sh"]' build_tools_into "ENV PATH=/usr/bin:/bin" "WORKDIR /home/app"
        if ((podman)); then
            ensure podman "$TOOLS_IMAGE" tools "sandbox-test tools" \
                "Host X11, PulseAudio and Wayland client binaries for integration tests" \
                '["/bin/sh"]' build_tools_into "ENV PATH=/usr/bin:/bin" "WORKDIR /home/app"
        fi
    fi
    if [[ $what == base || $what == all ]]; then
        ensure docker "$BASE_IMAGE" base-$SUITE "sandbox-test base $SUITE" \
            "Debian $SUITE runtime base for sandboxed apps: python3, python3-xlib, X11/pulse/wayland clients" \
            '["/bin/bash"]' build_base_into \
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "ENV LANG=C.UTF-8"
    fi
}

main "$@"
