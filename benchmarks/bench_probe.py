"""Benchmark: wall time of `sandbox probe --json` against bare interpreter and import start-up.

Run it on the harness so every probe talks to a real server:
    ./integration/harness.sh run -- python3 benchmarks/bench_probe.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    name: str
    argv: tuple[str, ...]
    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)


def time_command(name: str, argv: Sequence[str], runs: int) -> Measurement:
    times: list[float] = []
    subprocess.run(argv, capture_output=True, check=True)  # warm the page cache, not timed
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return Measurement(name, tuple(argv), tuple(times))


def sandbox_argv() -> list[str]:
    script = shutil.which("sandbox")
    return [script] if script else [sys.executable, "-m", "sandbox"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command (default 15)")
    args = parser.parse_args(argv)

    probe = [*sandbox_argv(), "probe", "--json"]
    facts = json.loads(subprocess.run(probe, capture_output=True, check=True).stdout)
    found = {name: section.get("available", False) for name, section in facts.items()}
    print("components:", ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in found.items()))
    print(f"harness: {os.environ.get('SANDBOX_HARNESS_DIR', '(none: this host as it is)')}")

    bare = time_command("python3 -c pass", [sys.executable, "-c", "pass"], args.runs)
    imp = time_command(
        "python3 -c 'import sandbox.cli'", [sys.executable, "-c", "import sandbox.cli"], args.runs
    )
    full = time_command("sandbox probe --json", probe, args.runs)

    print(f"\nmedian of {args.runs} runs (min-max):")
    for m in (bare, imp, full):
        print(
            f"  {m.name:<34} {m.median_s * 1000:7.1f} ms"
            f"  ({min(m.times_s) * 1000:.1f}-{max(m.times_s) * 1000:.1f})"
        )
    print("\nratios of medians:")
    print(f"  import sandbox.cli / python3 -c pass    {imp.median_s / bare.median_s:5.2f}x")
    print(f"  sandbox probe / python3 -c pass         {full.median_s / bare.median_s:5.2f}x")
    print(f"  sandbox probe / import sandbox.cli      {full.median_s / imp.median_s:5.2f}x")
    probing = full.median_s - imp.median_s
    print(f"  probing itself (probe - import)         {probing * 1000:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
