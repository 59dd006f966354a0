#!/usr/bin/env bash
# Runs every benchmark on the harness's real components, one after another (quiet machine
# wanted), and writes each one's report to benchmarks/results/<name>.txt.
#   ./integration/harness.sh run -- ./benchmarks/run_all.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=benchmarks/results
mkdir -p "$out"
py=$(python3 -c 'import sys; print(sys.executable)')

# The trivial app bench_run launches: the tools image with a manifest whose command is sh -c.
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cat > "$ctx/sandbox.toml" <<'TOML'
manifest-version = 1
[app]
id = "org.example.Bench"
name = "Bench"
version = "1.0"
command = ["/bin/sh", "-c"]
TOML
{ echo "FROM sandbox-test/tools:latest"; sandbox manifest labels --dockerfile "$ctx/sandbox.toml"; } \
    > "$ctx/Dockerfile"
docker build -q -t sandbox-bench/hello:1 "$ctx" >/dev/null 2>&1

run() {
    local name=$1
    shift
    echo "== $name: $*"
    "$py" "$@" 2>&1 | tee "$out/$name.txt"
}
run probe benchmarks/bench_probe.py --runs 15
run run benchmarks/bench_run.py sandbox-bench/hello:1 --runs 15
run attribution benchmarks/bench_attribution.py
run display benchmarks/bench_display.py
run pulse benchmarks/bench_pulse.py
run bundle benchmarks/bench_bundle.py --runs 3
run updates benchmarks/bench_updates.py
docker rmi sandbox-bench/hello:1 >/dev/null 2>&1 || true
