#!/usr/bin/env bash
# Builds the demo app image `sandbox-demo:<version>` with its manifest embedded as labels.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$here/demo_app.py" "$here/icon.png" "$ctx/"
{ cat "$here/Dockerfile.in"; sandbox manifest labels --dockerfile "$here/sandbox.toml"; } > "$ctx/Dockerfile"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/sandbox.toml" | head -n1)
if ! log=$(docker build -q -t "sandbox-demo:$version" -t sandbox-demo:latest "$ctx" 2>&1); then
  printf '%s\n' "$log" >&2
  exit 1
fi
echo "sandbox-demo:$version"
