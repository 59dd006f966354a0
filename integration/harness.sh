#!/usr/bin/env bash
# Starts REAL components (Docker engine, Xvfb, Weston, PulseAudio, Podman API) on private paths
# for the integration tests, locally and in CI; stops only what it started, by pid.
#
#   harness.sh install                     apt packages (only when missing) + pip install -e '.[test]'
#   harness.sh start                       start everything, write $STATE/env and $STATE/pids
#   harness.sh stop                        stop what start started, remove $STATE
#   harness.sh [--real-desktop] run -- CMD install, start, build test images, run CMD, stop
#   harness.sh images                      build (or reuse) the test images
#
# STATE is $SANDBOX_HARNESS_DIR (default /tmp/sandbox-harness; `run` without it makes a fresh
# /tmp/sandbox-harness.XXXXXX so concurrent runs never share servers). --real-desktop (or
# SANDBOX_REAL_DESKTOP=1) starts nothing and runs CMD against the user's own display, audio
# server and engine; tests then leave the user's windows, streams and files alone.
# Environment: SANDBOX_SKIP_INSTALL=1 skips `install` in `run`; SANDBOX_HARNESS_TIMEOUT (s, default
# 20) bounds each component's start.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/hostlib.sh
source "$HERE/hostlib.sh"
REPO=$(dirname "$HERE")
STATE=${SANDBOX_HARNESS_DIR:-/tmp/sandbox-harness}
TIMEOUT=${SANDBOX_HARNESS_TIMEOUT:-20}
DOCKER_SOCK=/var/run/docker.sock
WAYLAND_SOCKET=wayland-sandbox
APT_PACKAGES=(docker.io xvfb xauth weston pulseaudio pulseaudio-utils umockdev x11-utils x11-apps
    wayland-utils sox xdotool podman uidmap desktop-file-utils shared-mime-info xdg-utils acl
    debootstrap iproute2 procps ca-certificates
    pipewire pipewire-pulse pipewire-bin wireplumber dbus-daemon)  # the proxy is tested on both servers

log() { printf 'harness: %s\n' "$*" >&2; }
die() { printf 'harness: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------- install


apt_install() {
    local -a missing
    mapfile -t missing < <(missing_packages "$@")
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

cmd_install() {
    [[ $(id -u) == 0 ]] || die "install needs root (apt-get)"
    local start=$SECONDS
    apt_install "${APT_PACKAGES[@]}"
    # A fresh Debian has no python3 at all; pyenv or a venv may already provide one with pip.
    command -v python3 >/dev/null || apt_install python3 python3-pip
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    # The stamp names the interpreter, the checkout and the dependency list: a change reinstalls.
    local stamp_dir=/var/cache/sandbox-test stamp
    stamp=$(printf '%s %s %s' "$(command -v python3)" "$REPO" \
        "$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)" | sha256sum | cut -c1-16)
    if [[ -e $stamp_dir/pip-$stamp ]] && python3 -c 'import sandbox, pytest, hypothesis' 2>/dev/null \
        && command -v sandbox >/dev/null; then
        log "install: everything present ($((SECONDS - start)) s)"
        return 0
    fi
    mkdir -p "$stamp_dir"
    local -a pip=(python3 -m pip install -q -e "$REPO[test]")
    if ! "${pip[@]}" 2>"$stamp_dir/pip.log"; then
        # Debian's own python3 refuses system-wide installs (PEP 668); CI machines are throwaway.
        if grep -q externally-managed "$stamp_dir/pip.log"; then
            "${pip[@]}" --break-system-packages
        else
            cat "$stamp_dir/pip.log" >&2
            die "pip install -e '.[test]' failed"
        fi
    fi
    rm -f "$stamp_dir/pip.log" "$stamp_dir"/pip-*
    : >"$stamp_dir/pip-$stamp"
    log "install: done in $((SECONDS - start)) s"
}

# ------------------------------------------------------------------------------------ start

record_pid() { printf '%s %s\n' "$1" "$2" >>"$STATE/pids"; }

# Start a daemon detached from our stdin; its output goes to $STATE/<name>.log.
spawn() {
    local name=$1
    shift
    "$@" </dev/null >"$STATE/$name.log" 2>&1 &
    SPAWNED=$!
    record_pid "$name" "$SPAWNED"
}

# wait_for NAME PID CHECK...: poll CHECK until it succeeds; fail naming NAME with its log tail.
wait_for() {
    local name=$1 pid=$2
    shift 2
    local deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if [[ $pid != - ]] && ! kill -0 "$pid" 2>/dev/null; then
            fail_component "$name" "exited before answering"
        fi
        ((SECONDS < deadline)) || fail_component "$name" "did not answer within $TIMEOUT s"
        sleep 0.1
    done
}

fail_component() {
    local name=$1 why=$2
    log "$name $why; last lines of $STATE/$name.log:"
    tail -n 20 "$STATE/$name.log" 2>/dev/null | sed 's/^/    /' >&2 || true
    stop_started
    die "$name failed to start"
}

http_ping() {  # http_ping SOCKET: GET /_ping over a unix socket answers OK
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
sys.exit(0 if data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n")[0] else 1)
EOF
}

engine_answers() { timeout 5 env DOCKER_HOST="unix://$DOCKER_SOCK" docker version >/dev/null 2>&1; }

start_docker() {
    if engine_answers; then
        log "docker: an engine already answers on $DOCKER_SOCK; using it"
        return 0
    fi
    # A dockerd that is still starting owns its pid file: wait for it rather than race it.
    local pidfile=/var/run/docker.pid
    if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        log "docker: dockerd $(cat "$pidfile") is starting; waiting for it"
        wait_for dockerd - engine_answers
        return 0
    fi
    command -v dockerd >/dev/null || die "dockerd not installed (run: harness.sh install)"
    spawn dockerd dockerd --host "unix://$DOCKER_SOCK"
    wait_for dockerd "$SPAWNED" engine_answers
    log "docker: started dockerd (pid $SPAWNED)"
}

start_xvfb() {
    local n xauth=$STATE/xauth
    : >"$xauth"
    chmod 600 "$xauth"
    for n in $(seq 99 160); do
        [[ -e /tmp/.X11-unix/X$n || -e /tmp/.X$n-lock ]] && continue
        xauth -q -f "$xauth" add ":$n" MIT-MAGIC-COOKIE-1 "$(mcookie)"
        # -noreset: a reset (last client gone) would drop every SECURITY authorization.
        spawn xvfb Xvfb ":$n" -auth "$xauth" -screen 0 1280x1024x24 -nolisten tcp -noreset
        local deadline=$((SECONDS + TIMEOUT))
        while kill -0 "$SPAWNED" 2>/dev/null; do
            if DISPLAY=":$n" XAUTHORITY=$xauth xdpyinfo >/dev/null 2>&1; then
                X_DISPLAY=":$n"
                log "x11: Xvfb on :$n (pid $SPAWNED)"
                return 0
            fi
            ((SECONDS < deadline)) || fail_component xvfb "did not answer on :$n within $TIMEOUT s"
            sleep 0.1
        done
        # Lost a race for :$n with another server: forget the pid and try the next number.
        wait "$SPAWNED" 2>/dev/null || true
        sed -i "/^xvfb $SPAWNED\$/d" "$STATE/pids"
        grep -q 'already active' "$STATE/xvfb.log" || fail_component xvfb "exited before answering"
        xauth -q -f "$xauth" remove ":$n"
    done
    die "no free X display number in :99-:160"
}

start_weston() {
    local runtime=$STATE/runtime
    mkdir -p "$runtime"
    chmod 700 "$runtime"
    spawn weston env XDG_RUNTIME_DIR="$runtime" weston --backend=headless-backend.so \
        --socket="$WAYLAND_SOCKET" --idle-time=0
    wait_for weston "$SPAWNED" env XDG_RUNTIME_DIR="$runtime" WAYLAND_DISPLAY="$WAYLAND_SOCKET" \
        timeout 5 wayland-info
    log "wayland: weston on $runtime/$WAYLAND_SOCKET (pid $SPAWNED)"
}

start_pulse() {
    local dir=$STATE/pulse
    mkdir -p "$dir/home" "$dir/runtime"
    chmod 700 "$dir" "$dir/runtime"
    spawn pulseaudio env HOME="$dir/home" XDG_RUNTIME_DIR="$dir/runtime" \
        pulseaudio --daemonize=no --system=false --exit-idle-time=-1 --use-pid-file=no \
        --disallow-exit -n --log-target=stderr \
        -L 'module-null-sink sink_name=test_null' \
        -L "module-native-protocol-unix socket=$dir/native auth-anonymous=1"
    wait_for pulseaudio "$SPAWNED" env PULSE_SERVER="unix:$dir/native" timeout 5 pactl info
    PULSE_SERVER="unix:$dir/native" pactl set-default-sink test_null
    log "audio: pulseaudio on $dir/native (pid $SPAWNED)"
}

start_podman() {
    local conf=$STATE/containers.conf sock=$STATE/podman.sock
    # This VM forbids raising rlimits, which podman's defaults try to do.
    cat >"$conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
EOF
    spawn podman env CONTAINERS_CONF="$conf" podman --cgroup-manager cgroupfs \
        --events-backend file system service --time=0 "unix://$sock"
    wait_for podman "$SPAWNED" http_ping "$sock"
    log "podman: API service on $sock (pid $SPAWNED)"
}

write_env() {
    {
        printf 'export %s=%q\n' \
            DISPLAY "$X_DISPLAY" \
            XAUTHORITY "$STATE/xauth" \
            WAYLAND_DISPLAY "$WAYLAND_SOCKET" \
            XDG_RUNTIME_DIR "$STATE/runtime" \
            PULSE_SERVER "unix:$STATE/pulse/native" \
            DOCKER_HOST "unix://$DOCKER_SOCK" \
            SANDBOX_TEST_PODMAN_HOST "unix://$STATE/podman.sock" \
            SANDBOX_HARNESS_DIR "$STATE"
    } >"$STATE/env"
}

harness_alive() {
    local name pid
    [[ -s $STATE/pids ]] || return 1
    while read -r name pid; do
        kill -0 "$pid" 2>/dev/null && return 0
    done <"$STATE/pids"
    return 1
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "start needs root (dockerd, podman service)"
    if harness_alive; then
        die "a harness already runs in $STATE (run 'harness.sh stop' or set SANDBOX_HARNESS_DIR)"
    fi
    rm -rf "$STATE"
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    : >"$STATE/pids"
    local start=$SECONDS
    start_docker
    start_xvfb
    start_weston
    start_pulse
    start_podman
    write_env
    log "all components answer ($((SECONDS - start)) s); env in $STATE/env"
}

# ------------------------------------------------------------------------------------- stop

# The binary each recorded name must still be, so a recycled pid is never signalled.
expected_exe() {
    case $1 in
        dockerd) echo dockerd ;;
        xvfb) echo Xvfb ;;
        weston) echo weston ;;
        pulseaudio) echo pulseaudio ;;
        podman) echo podman ;;
        *) echo "" ;;
    esac
}

stop_pid() {
    local name=$1 pid=$2 exe i
    exe=$(expected_exe "$name")
    kill -0 "$pid" 2>/dev/null || return 0
    [[ -n $exe && $(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)") == "$exe" ]] || {
        log "not stopping pid $pid: it is no longer $name"
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        # Our own children stay zombies until reaped; a zombie has stopped.
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

stop_started() {
    [[ -s $STATE/pids ]] || return 0
    local -a lines
    mapfile -t lines <"$STATE/pids"
    local i name pid
    for ((i = ${#lines[@]} - 1; i >= 0; i--)); do  # reverse start order
        read -r name pid <<<"${lines[i]}"
        stop_pid "$name" "$pid"
    done
    : >"$STATE/pids"
}

cmd_stop() {
    [[ -d $STATE ]] || { log "nothing to stop in $STATE"; return 0; }
    stop_started
    local display="" pid
    [[ -r $STATE/env ]] && display=$(sed -n 's/^export DISPLAY=:\([0-9]*\)$/\1/p' "$STATE/env")
    # A killed Xvfb leaves its lock and socket; a later server would skip that number forever.
    if [[ -n $display && -e /tmp/.X$display-lock ]]; then
        pid=$(tr -d ' ' <"/tmp/.X$display-lock" 2>/dev/null || true)
        if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
            rm -f "/tmp/.X$display-lock" "/tmp/.X11-unix/X$display"
        fi
    fi
    rm -rf "$STATE"
    log "stopped; removed $STATE"
}

# -------------------------------------------------------------------------------------- run

cmd_images() {
    local -a args=(all)
    [[ -n ${SANDBOX_TEST_PODMAN_HOST:-} ]] && command -v podman >/dev/null && args+=(--podman)
    "$HERE/images.sh" "${args[@]}"
}

cmd_run() {
    local real_desktop=${SANDBOX_REAL_DESKTOP:-0}
    while (($#)); do
        case $1 in
            --real-desktop) real_desktop=1; shift ;;
            --) shift; break ;;
            *) die "unknown run option '$1' (usage: harness.sh [--real-desktop] run -- CMD...)" ;;
        esac
    done
    (($#)) || die "run needs a command after --"
    if [[ ${SANDBOX_SKIP_INSTALL:-0} != 1 ]]; then
        if [[ $(id -u) == 0 ]]; then cmd_install; else log "not root: skipping install"; fi
    fi
    if [[ $real_desktop == 1 ]]; then
        export SANDBOX_REAL_DESKTOP=1
        log "real desktop: starting nothing; using DISPLAY=${DISPLAY:-unset}" \
            "WAYLAND_DISPLAY=${WAYLAND_DISPLAY:-unset} PULSE_SERVER=${PULSE_SERVER:-default}" \
            "DOCKER_HOST=${DOCKER_HOST:-default}"
        if [[ $(id -u) == 0 ]]; then cmd_images; else log "not root: not building test images"; fi
    else
        if [[ -z ${SANDBOX_HARNESS_DIR:-} ]]; then
            # Several runs may share a machine (engineers, CI jobs): each gets its own state dir.
            STATE=$(mktemp -d /tmp/sandbox-harness.XXXXXX)
        elif harness_alive; then
            die "a harness already runs in $STATE (run 'harness.sh stop' or unset SANDBOX_HARNESS_DIR)"
        fi
        trap cmd_stop EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        cmd_start
        # shellcheck source=/dev/null
        source "$STATE/env"
        cmd_images
    fi
    local status=0
    "$@" || status=$?
    exit "$status"
}

main() {
    local real_desktop_flag=()
    if [[ ${1:-} == --real-desktop ]]; then
        real_desktop_flag=(--real-desktop)
        shift
    fi
    case ${1:-} in
        install) cmd_install ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        images) cmd_images ;;
        run) shift; cmd_run "${real_desktop_flag[@]}" "$@" ;;
        *) die "usage: harness.sh install|start|stop|images|[--real-desktop] run [--real-desktop] -- CMD..." ;;
    esac
}

main "$@"
