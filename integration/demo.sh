#!/usr/bin/env bash
# The main job: set up a fresh Debian 12 machine (as root) and run the demo app sandboxed.
#
#   ./integration/demo.sh                  # on private Xvfb, Weston, PulseAudio (and dockerd)
#   ./integration/demo.sh --real-desktop   # on this session's own display, audio and engine
#
# The harness installs what is missing, starts the components, builds the local Debian base
# image, runs demo/run_demo.sh with the components' environment, and stops what it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
args=()
if [ "${1:-}" = "--real-desktop" ]; then
    args+=(--real-desktop)
fi
exec ./integration/harness.sh "${args[@]}" run -- ./demo/run_demo.sh
