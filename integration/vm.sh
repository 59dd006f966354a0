#!/usr/bin/env bash
# A real desktop host for the integration tests: a Debian 12 guest under QEMU with systemd as
# PID 1, cgroup v2, udevd, logind, a desktop user (uid 1000) with a lingering user manager,
# PipeWire + WirePlumber + pipewire-pulse, Weston (headless) + Xwayland, Docker (systemd driver),
# rootless Podman, and real kernel devices (vivid webcam, uinput gamepad, virtio-gpu render node,
# intel-hda sound card). docs/desktop-guest.md has the details and the measured times.
#
#   vm.sh build                 build the guest image, or reuse the cached one (needs root)
#   vm.sh run [--root] -- CMD   boot the guest if it is not running, copy this checkout into it,
#                               install it there, run CMD as the desktop user (or root) from the
#                               copy; print its output, exit with its status
#   vm.sh stop                  shut the guest down; nothing of it is left running
#
# The image is built from integration/vm/ (packages, wheels.txt, rootfs/, customize.sh) and cached
# in $SANDBOX_VM_CACHE/<recipe hash>/ (default /var/cache/sandbox-vm): a changed recipe builds a
# new one. Each boot runs on a fresh qcow2 overlay in $SANDBOX_VM_STATE (default
# /tmp/sandbox-vm.<hash of this checkout's path>), so the cached image stays pristine and one
# checkout's guest is not another's. The host reaches the guest only by ssh through a hostfwd on
# 127.0.0.1; the guest has no network beyond that (QEMU user networking with restrict=on).
# Environment: SANDBOX_VM_ACCEL=auto|tcg|kvm (auto: KVM only where the CPU offers vmx/svm and
# the guest really boots, else TCG), SANDBOX_VM_MEM (3G), SANDBOX_VM_SMP (2),
# SANDBOX_VM_BOOT_TIMEOUT (s, default 600).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/hostlib.sh
source "$HERE/hostlib.sh"
REPO=$(dirname "$HERE")
RECIPE_DIR=$HERE/vm
RECIPE_VERSION=1  # bump to rebuild without a recipe file change (e.g. the build steps below)
SUITE=bookworm
CACHE_ROOT=${SANDBOX_VM_CACHE:-/var/cache/sandbox-vm}
STATE=${SANDBOX_VM_STATE:-/tmp/sandbox-vm.$(printf '%s' "$REPO" | sha256sum | cut -c1-12)}
MEM=${SANDBOX_VM_MEM:-3G}
SMP=${SANDBOX_VM_SMP:-2}
BOOT_TIMEOUT=${SANDBOX_VM_BOOT_TIMEOUT:-600}
ACCEL=${SANDBOX_VM_ACCEL:-auto}
GUEST_USER=desktop
GUEST_CHECKOUT=/home/$GUEST_USER/sandbox
DISK_SIZE=8G
BOOTSTRAP_INCLUDE=systemd,systemd-sysv,udev,dbus,kmod,iproute2,linux-image-amd64,procps,python3,ca-certificates
HOST_PACKAGES=(qemu-system-x86 qemu-utils debootstrap e2fsprogs openssh-client python3-pip zstd)

log() { printf 'vm: %s\n' "$*" >&2; }
die() { printf 'vm: error: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------------------ host packages


apt_install() {
    local -a missing
    mapfile -t missing < <(missing_packages "$@")
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || die "host packages missing (${missing[*]}); installing them needs root"
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    nice -n 10 apt-get update -qq
    nice -n 10 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ------------------------------------------------------------------------------------ build

recipe_hash() {  # paths, modes and contents of the recipe, and the build steps' version
    (
        cd "$RECIPE_DIR"
        printf 'version %s suite %s include %s\n' "$RECIPE_VERSION" "$SUITE" "$BOOTSTRAP_INCLUDE"
        find . -type f -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' f; do
            printf '%s %s %s\n' "$f" "$(stat -c %a "$f")" "$(sha256sum <"$f" | cut -d' ' -f1)"
        done
    ) | sha256sum | cut -c1-16
}

IMAGE=""  # the cache dir of the current recipe, set by image_dir
image_dir() { IMAGE=$CACHE_ROOT/$(recipe_hash); }
# The image the running guest was booted from (its ssh key), even if the recipe changed since.
running_image() { if [[ -s $STATE/image ]]; then IMAGE=$(<"$STATE/image"); else image_dir; fi; }

image_ready() { [[ -s $IMAGE/disk.raw && -s $IMAGE/vmlinuz && -s $IMAGE/initrd.img && -s $IMAGE/id_ed25519 ]]; }


MOUNTS=()    # chroot mounts to undo, innermost last
BUILD_WORK=""
build_cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true
    done
    MOUNTS=()
    [[ -n $BUILD_WORK ]] && rm -rf "$BUILD_WORK"
    BUILD_WORK=""
}

chroot_mount() {  # chroot_mount ROOT: /proc, /sys and /dev for apt's maintainer scripts
    local root=$1
    mount -t proc proc "$root/proc" && MOUNTS+=("$root/proc")
    mount -t sysfs sysfs "$root/sys" && MOUNTS+=("$root/sys")
    mount --bind /dev "$root/dev" && MOUNTS+=("$root/dev")
    mount -t devpts devpts "$root/dev/pts" -o newinstance,ptmxmode=0666 && MOUNTS+=("$root/dev/pts")
}

in_chroot() { local root=$1; shift; nice -n 10 chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

recipe_list() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$1"; }

build_image() {  # build_image OUT: build the image into the (new, empty) directory OUT
    local out=$1 root=$1/rootfs mirror start=$SECONDS t
    local -a packages wheels
    mapfile -t packages < <(recipe_list "$RECIPE_DIR/packages")
    mapfile -t wheels < <(recipe_list "$RECIPE_DIR/wheels.txt")
    mirror=$(debian_mirror)

    # The debootstrap stage is cached on its own (its inputs only): a recipe change skips it.
    local stage
    stage=$CACHE_ROOT/debootstrap-$(printf '%s %s %s' "$SUITE" "$BOOTSTRAP_INCLUDE" "$mirror" \
        | sha256sum | cut -c1-16).tar
    t=$SECONDS
    if [[ -s $stage ]]; then
        mkdir -p "$root"
        tar --numeric-owner -C "$root" -xf "$stage"
        log "build: debootstrap stage reused from $stage ($((SECONDS - t)) s)"
    else
        log "build: debootstrap $SUITE from $mirror"
        nice -n 10 debootstrap --variant=minbase --include="$BOOTSTRAP_INCLUDE" "$SUITE" "$root" "$mirror" \
            >"$out/debootstrap.log" 2>&1 || { tail -n 30 "$out/debootstrap.log" >&2; die "debootstrap failed"; }
        rm -f "$root"/var/cache/apt/archives/*.deb
        nice -n 10 tar --numeric-owner -C "$root" -cf "$stage.part" . && mv "$stage.part" "$stage"
        log "build: debootstrap done ($((SECONDS - t)) s)"
    fi

    t=$SECONDS
    chroot_mount "$root"
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"  # no service starts in the chroot
    chmod +x "$root/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$SUITE" "$mirror" "$SUITE" \
        >"$root/etc/apt/sources.list"
    in_chroot "$root" apt-get update -qq >"$out/apt.log" 2>&1 \
        && in_chroot "$root" apt-get install -y -q --no-install-recommends "${packages[@]}" >>"$out/apt.log" 2>&1 \
        || { tail -n 30 "$out/apt.log" >&2; die "apt-get install in the guest chroot failed"; }
    log "build: ${#packages[@]} packages installed ($((SECONDS - t)) s)"

    t=$SECONDS
    mkdir -p "$root/tmp/wheels"
    nice -n 10 python3 -m pip wheel -q --no-deps -w "$root/tmp/wheels" "${wheels[@]}" >"$out/pip.log" 2>&1 \
        || { tail -n 20 "$out/pip.log" >&2; die "pip wheel ${wheels[*]} failed"; }
    in_chroot "$root" sh -c 'python3 -m pip install -q --no-index --no-deps --break-system-packages \
        /tmp/wheels/*.whl' >>"$out/pip.log" 2>&1 || { tail -n 20 "$out/pip.log" >&2; die "pip install in the guest failed"; }
    log "build: wheels ${wheels[*]} installed ($((SECONDS - t)) s)"

    t=$SECONDS
    cp -a --no-preserve=ownership "$RECIPE_DIR/rootfs/." "$root/"
    ssh-keygen -q -t ed25519 -N '' -C sandbox-vm -f "$out/id_ed25519"
    cp "$out/id_ed25519.pub" "$root/tmp/authorized_keys"
    install -m 0755 "$RECIPE_DIR/customize.sh" "$root/tmp/customize.sh"
    in_chroot "$root" /tmp/customize.sh >"$out/customize.log" 2>&1 \
        || { tail -n 30 "$out/customize.log" >&2; die "customize.sh failed in the guest chroot"; }
    printf 'sandbox-guest %s\n' "$(cut -d' ' -f1,2 "$root/etc/ssh/ssh_host_ed25519_key.pub")" >"$out/known_hosts"
    log "build: guest configured ($((SECONDS - t)) s)"

    build_cleanup_chroot "$root"
    local kernel
    kernel=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
    [[ -n $kernel ]] || die "no kernel in the guest's /boot"
    cp "$kernel" "$out/vmlinuz"
    cp "$root/boot/initrd.img-${kernel##*/vmlinuz-}" "$out/initrd.img"
    t=$SECONDS
    nice -n 10 mkfs.ext4 -q -F -L sandbox-guest -d "$root" "$out/disk.raw" "$DISK_SIZE" >/dev/null
    log "build: mkfs.ext4 -d ($((SECONDS - t)) s)"
    rm -rf "$root"
    printf 'recipe %s\nbuilt %s\nbuild_s %s\n' "${IMAGE##*/}" "$(date -u +%FT%TZ)" "$((SECONDS - start))" \
        >"$out/info"
}

build_cleanup_chroot() {  # undo the chroot mounts and everything build-time only
    local root=$1
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[i]}"; done
    MOUNTS=()
    rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf"
    rm -rf "$root"/tmp/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/var/cache/apt/archives/*.deb "$root"/var/log/apt/* "$root"/root/.cache
    find "$root/var/log" -type f -name '*.log' -delete
}

cmd_build() {
    image_dir
    if image_ready; then
        log "image $IMAGE present"
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "building the image needs root (debootstrap, chroot, mount)"
    apt_install "${HOST_PACKAGES[@]}"
    mkdir -p "$CACHE_ROOT"
    exec 8>"$IMAGE.lock"
    flock 8  # another checkout may be building the same recipe: wait for it, then reuse
    if image_ready; then
        log "image $IMAGE present (built meanwhile)"
        return 0
    fi
    local start=$SECONDS
    BUILD_WORK=$(mktemp -d "$IMAGE.build.XXXXXX")
    trap build_cleanup EXIT
    build_image "$BUILD_WORK"
    rm -rf "$IMAGE"
    mv "$BUILD_WORK" "$IMAGE"
    BUILD_WORK=""
    trap - EXIT
    log "image $IMAGE built in $((SECONDS - start)) s ($(du -h "$IMAGE/disk.raw" | cut -f1) used of $DISK_SIZE)"
}

# ------------------------------------------------------------------------------- boot, ssh

qemu_pid() {  # the pid of this state dir's QEMU, if it runs
    local pid
    [[ -s $STATE/qemu.pid ]] || return 1
    pid=$(<"$STATE/qemu.pid")
    [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$STATE/overlay.qcow2" \
        || return 1
    printf '%s\n' "$pid"
}

# guest_ssh USER [ssh args...]: the guest as USER, by the image's key. The first call per user
# leaves a master connection behind (ControlPersist; `stop` ends it): under TCG a fresh ssh login
# costs 3-5 s, a multiplexed one under 1 s. Neither it nor QEMU may inherit the lock fds 8 and 9:
# a lock held by a long-lived child would block every later vm.sh.
guest_ssh() {
    local user=$1
    shift
    ssh -i "$IMAGE/id_ed25519" -p "$(<"$STATE/port")" -o BatchMode=yes -o IdentitiesOnly=yes \
        -o ControlMaster=auto -o ControlPersist=yes -o ControlPath="$STATE/ssh-%r.sock" \
        -o UserKnownHostsFile="$IMAGE/known_hosts" -o HostKeyAlias=sandbox-guest \
        -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -o ServerAliveInterval=15 \
        -o ServerAliveCountMax=8 -o LogLevel=ERROR -T "$user@127.0.0.1" "$@" 8>&- 9>&-
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

kvm_usable() {  # a stock kernel needs real hardware virtualisation (PVM's /dev/kvm will not do)
    [[ -r /dev/kvm && -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo
}

start_qemu() {  # start_qemu ACCEL: launch QEMU in the background on a fresh overlay
    local accel=$1
    local -a accel_args
    if [[ $accel == kvm ]]; then
        accel_args=(-accel kvm -cpu host)
    else
        accel_args=(-accel tcg,thread=multi,tb-size=512 -cpu max)
    fi
    rm -f "$STATE/overlay.qcow2" "$STATE/qemu.pid" "$STATE/console.log"
    qemu-img create -q -f qcow2 -b "$IMAGE/disk.raw" -F raw "$STATE/overlay.qcow2"
    free_port >"$STATE/port"
    printf '%s\n' "$IMAGE" >"$STATE/image"
    printf '%s\n' "$accel" >"$STATE/accel"
    nice -n 10 qemu-system-x86_64 -name sandbox-guest "${accel_args[@]}" -smp "$SMP" -m "$MEM" \
        -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd.img" \
        -append 'console=ttyS0 root=/dev/vda rw quiet net.ifnames=0 systemd.show_status=0 mitigations=off' \
        -drive "file=$STATE/overlay.qcow2,format=qcow2,if=virtio,cache=unsafe,discard=unmap" \
        -display none -nodefaults -serial "file:$STATE/console.log" \
        -nic "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:$(<"$STATE/port")-:22" \
        -device virtio-rng-pci -device virtio-gpu-pci \
        -audiodev none,id=snd0 -device intel-hda -device hda-duplex,audiodev=snd0 \
        -monitor "unix:$STATE/monitor.sock,server,nowait" -pidfile "$STATE/qemu.pid" \
        </dev/null >"$STATE/qemu.log" 2>&1 8>&- 9>&- &
    local launcher=$!
    local deadline=$((SECONDS + 10))
    until [[ -s $STATE/qemu.pid ]]; do
        if ! kill -0 "$launcher" 2>/dev/null; then
            tail -n 5 "$STATE/qemu.log" >&2
            return 1
        fi
        ((SECONDS < deadline)) || { log "QEMU wrote no pid file in 10 s"; return 1; }
        sleep 0.2
    done
}

wait_for_guest() {  # until sshd answers and systemd finished booting (root) and the user's manager
    local deadline=$((SECONDS + BOOT_TIMEOUT)) state
    until guest_ssh root true 2>/dev/null; do
        qemu_pid >/dev/null || { tail -n 20 "$STATE/qemu.log" "$STATE/console.log" >&2; return 1; }
        ((SECONDS < deadline)) || { log "no ssh answer in $BOOT_TIMEOUT s"; return 1; }
        sleep 2
    done
    printf '%s\n' "$SECONDS" >"$STATE/ssh_s"
    state=$(guest_ssh root "timeout $BOOT_TIMEOUT systemctl is-system-running --wait" || true)
    if [[ $state != running ]]; then
        log "guest system state: ${state:-unknown}; failed units:"
        guest_ssh root 'systemctl --failed --no-legend --plain' | sed 's/^/    /' >&2 || true
    fi
    state=$(guest_ssh "$GUEST_USER" "timeout $BOOT_TIMEOUT systemctl --user is-system-running --wait" || true)
    if [[ $state != running ]]; then
        log "desktop user's manager: ${state:-unknown}; failed user units:"
        guest_ssh "$GUEST_USER" 'systemctl --user --failed --no-legend --plain' | sed 's/^/    /' >&2 || true
    fi
}

boot() {
    image_dir
    image_ready || cmd_build
    mkdir -p "$STATE"
    chmod 0700 "$STATE"
    apt_install qemu-system-x86 qemu-utils openssh-client
    local accel=$ACCEL start=$SECONDS
    if [[ $accel == auto ]]; then
        accel=tcg
        kvm_usable && accel=kvm
    fi
    log "booting the guest ($accel, $SMP cpus, $MEM; console: $STATE/console.log)"
    if ! start_qemu "$accel" || ! wait_for_guest; then
        if [[ $accel == kvm && $ACCEL == auto ]]; then
            log "KVM did not boot the guest; falling back to TCG"
            stop_qemu
            start=$SECONDS
            accel=tcg
            start_qemu tcg && wait_for_guest || { stop_qemu; die "the guest did not boot (logs above)"; }
        else
            stop_qemu
            die "the guest did not boot (logs above)"
        fi
    fi
    log "guest up ($accel): ssh after $(($(<"$STATE/ssh_s") - start)) s, booted after $((SECONDS - start)) s"
}

stop_qemu() {  # power the guest off; after a grace period quit QEMU, then kill it, by its pid
    local pid deadline
    pid=$(qemu_pid) || { stop_ssh_masters; rm -rf "$STATE"; return 0; }
    [[ -s $STATE/port ]] && guest_ssh root 'systemctl poweroff --no-block' >/dev/null 2>&1 || true
    deadline=$((SECONDS + 60))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "guest did not power off in 60 s; quitting QEMU"
        python3 - "$STATE/monitor.sock" <<'EOF' || true
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"quit\n")
s.recv(4096)
EOF
        deadline=$((SECONDS + 10))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
    fi
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        sleep 2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    stop_ssh_masters
    rm -rf "$STATE"
}

stop_ssh_masters() {  # the ControlPersist masters guest_ssh left (they also end with the guest)
    local sock
    for sock in "$STATE"/ssh-*.sock; do
        [[ -S $sock ]] && ssh -o ControlPath="$sock" -O exit sandbox-guest >/dev/null 2>&1 || true
    done
}

# ------------------------------------------------------------------------------------- run

checkout_files() {  # NUL-separated: tracked files still present + untracked, not ignored
    git -C "$REPO" ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
        [[ -e $REPO/$f || -L $REPO/$f ]] && printf '%s\0' "$f"
    done
}

sync_checkout() {  # copy the checkout into the guest; (re)install it when pyproject.toml changed
    local t=$SECONDS stamp
    checkout_files | tar -C "$REPO" --null -T - -cf - \
        | guest_ssh "$GUEST_USER" "rm -rf $GUEST_CHECKOUT && mkdir -p $GUEST_CHECKOUT && tar -C $GUEST_CHECKOUT -xf -" \
        || die "copying the checkout into the guest failed"
    stamp=$(sha256sum "$REPO/pyproject.toml" | cut -c1-16)
    if ! guest_ssh root "test -e /run/sandbox-vm-installed-$stamp"; then
        guest_ssh root "cd $GUEST_CHECKOUT && python3 -m pip install -q --no-deps --no-build-isolation \
            --no-index --break-system-packages -e . >/run/sandbox-vm-pip.log 2>&1 \
            && rm -f /run/sandbox-vm-installed-* && touch /run/sandbox-vm-installed-$stamp" \
            || { guest_ssh root 'tail -n 20 /run/sandbox-vm-pip.log' >&2; die "pip install -e in the guest failed"; }
        log "checkout copied and installed in the guest ($((SECONDS - t)) s)"
    else
        log "checkout copied into the guest ($((SECONDS - t)) s)"
    fi
}

cmd_run() {
    local user=$GUEST_USER
    while (($#)); do
        case $1 in
            --root) user=root; shift ;;
            --) shift; break ;;
            *) die "usage: vm.sh run [--root] -- CMD..." ;;
        esac
    done
    (($#)) || die "usage: vm.sh run [--root] -- CMD..."
    mkdir -p "$(dirname "$STATE")"
    # One boot and one copy at a time per checkout; CMD itself runs outside the lock.
    exec 9>"$STATE.lock"
    flock 9
    if qemu_pid >/dev/null; then
        running_image
        local current
        current=$(recipe_hash)
        [[ ${IMAGE##*/} == "$current" ]] \
            || log "the running guest was booted from an older recipe (${IMAGE##*/}); \`vm.sh stop\` to boot the new one"
    else
        boot
    fi
    sync_checkout
    flock -u 9
    local quoted
    quoted=$(printf ' %q' "$@")
    local status=0
    guest_ssh "$user" "exec /usr/local/bin/sandbox-vm-exec $GUEST_CHECKOUT$quoted" || status=$?
    return "$status"
}

cmd_stop() {
    exec 9>"$STATE.lock"
    flock 9
    running_image
    if qemu_pid >/dev/null; then
        log "stopping the guest"
        stop_qemu
    else
        rm -rf "$STATE"
        log "no guest running"
    fi
}

main() {
    (($#)) || die "usage: vm.sh build | run [--root] -- CMD... | stop"
    local cmd=$1
    shift
    case $cmd in
        build) cmd_build "$@" ;;
        run) cmd_run "$@" ;;
        stop) cmd_stop "$@" ;;
        *) die "unknown command '$cmd' (usage: vm.sh build | run [--root] -- CMD... | stop)" ;;
    esac
}

main "$@"
