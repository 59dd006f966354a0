"""Benchmark: app_for_pid uncached and cached against a plain read of /proc/<pid>/cgroup."""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

from sandbox.attribution import AttributionCache, Validation, app_for_pid


def _median_us(fn: Callable[[], object], rounds: int, per_round: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            fn()
        samples.append((time.perf_counter() - start) / per_round * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pid", type=int, default=os.getpid(), help="pid to look up")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    pid = args.pid
    path = f"/proc/{pid}/cgroup"

    def plain_read() -> str:
        with open(path) as f:
            return f.read()

    print(f"pid {pid}: {app_for_pid(pid)}")
    base = _median_us(plain_read, args.rounds, 2000)
    uncached = _median_us(lambda: app_for_pid(pid), args.rounds, 2000)
    print(f"{'plain open().read() of /proc/PID/cgroup':<44} {base:8.2f} us")
    print(f"{'app_for_pid, uncached':<44} {uncached:8.2f} us  ({uncached / base:.2f}x)")
    for validation in Validation:
        with AttributionCache(validation, ttl_s=3600) as cache:
            cache.lookup(pid)
            us = _median_us(functools.partial(cache.lookup, pid), args.rounds, 50_000)
        print(
            f"{'AttributionCache ' + validation.value + ', hit':<44} {us:8.2f} us  "
            f"= {1e6 / us:,.0f} lookups/s"
        )


if __name__ == "__main__":
    main()
