#!/usr/bin/env bash
# The demo's steps, run by integration/demo.sh inside the harness's environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The app runs as the invoking user's uid. Run as root, the launcher acts for a demo user the
# way it does under sudo (SUDO_UID/SUDO_GID name the invoking user), so the container shows a
# real unprivileged uid and the save file belongs to that user.
if [ "$(id -u)" = 0 ] && [ -z "${SUDO_UID:-}" ]; then
    id -u sandbox-demo >/dev/null 2>&1 || useradd --create-home --shell /usr/sbin/nologin sandbox-demo
    export SUDO_USER=sandbox-demo SUDO_UID SUDO_GID
    SUDO_UID=$(id -u sandbox-demo)
    SUDO_GID=$(id -g sandbox-demo)
fi

step "What this host offers"
sandbox probe

step "Build the demo app FROM the local Debian runtime base (its manifest travels as labels)"
image=$(./demo/build.sh)
sandbox manifest check "$image"

step "Permission review (what the app may do on THIS host)"
sandbox plan "$image"

# An app id belongs to its installed app (docs/security.md "Identity"): `sandbox run APP-ID`
# runs installed apps only, so the demo ships the app as one file and installs it, as a user
# would. Its saves, cgroup and records are then keyed on the installed org.sandbox.Demo.
step "Ship and install: export one .sbx file, verify it, review, consent, menu entry"
bundle_dir=$(mktemp -d)
trap 'rm -rf "$bundle_dir"' EXIT
sandbox export "$image" -o "$bundle_dir/demo.sbx"
sandbox install --yes "$bundle_dir/demo.sbx"

step "Run 1: launch sandboxed (a window, a tone, a save file)"
sandbox run --yes org.sandbox.Demo -- 6 &
launcher=$!
pid=""
for _ in $(seq 1 100); do
    pid=$(sandbox ps --json | python3 -c 'import json,sys
apps=[i for i in json.load(sys.stdin) if i["app_id"]=="org.sandbox.Demo" and i["pids"]]
print(apps[0]["pids"][0] if apps else "")')
    [ -n "$pid" ] && break
    sleep 0.1
done
if [ -z "$pid" ]; then
    echo "demo: the app did not show up in sandbox ps" >&2
    wait "$launcher" || true
    exit 1
fi
# The app plays its tone first, then maps its window: wait until the X server shows it.
for _ in $(seq 1 100); do
    sandbox windows --json | python3 -c 'import json,sys
sys.exit(0 if any(w["app_id"]=="org.sandbox.Demo" for w in json.load(sys.stdin)) else 1)' && break
    sleep 0.1
done

step "sandbox ps: the running instance and its host pids"
sandbox ps

step "sandbox attribute $pid: a system service asks which app this host pid is (procfs only)"
sandbox attribute "$pid"
echo "and the launcher's own pid $$:"
sandbox attribute $$

step "sandbox windows: the window manager's view (X-Resource pid -> app)"
sandbox windows

wait "$launcher"

step "Run 2: the save file from run 1 is read back"
sandbox run --yes org.sandbox.Demo -- 1

step "The app's data on the host (kept across runs, owned by the user)"
sandbox data org.sandbox.Demo
