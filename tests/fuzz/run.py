"""Runs the fuzz targets outside CI: `python3 -m tests.fuzz.run --count 1000000 [TARGET ...]`.

Prints, per target, how many inputs ran, how fast, and the findings (an input that made the
parser raise anything but its documented error, or write); each finding's input is saved under
--out so that `--replay FILE TARGET` runs it again. Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

from tests.fuzz.targets import TARGETS, Target, check, inputs


def _run_one(target: Target, count: int, seed: int, limit_s: float, out: Path) -> int:
    gen = inputs(target, count, seed)
    start = time.monotonic()
    found = done = 0
    for done in range(1, count + 1):
        data = gen()
        finding = check(target, data)
        if finding is not None:
            found += 1
            name = out / f"{target.name}-{hashlib.sha256(data).hexdigest()[:16]}.bin"
            name.write_bytes(data)
            print(f"{target.name}: FINDING #{done} saved as {name}\n{finding}", flush=True)
        if done % 100_000 == 0:
            print(f"{target.name}: {done} ...", flush=True)
        if time.monotonic() - start > limit_s:
            break
    took = time.monotonic() - start
    print(
        f"{target.name}: {done} inputs in {took:.1f} s ({done / took:.0f}/s), {found} findings",
        flush=True,
    )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.fuzz.run", description=__doc__)
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"of {', '.join(TARGETS)}")
    parser.add_argument("--count", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=1, help="the mutator's random seed")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=float("inf"),
        metavar="S",
        help="stop each target after S seconds (the count reached is printed)",
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/sandbox-fuzz"), help="findings dir")
    parser.add_argument("--replay", type=Path, metavar="FILE", help="run one saved input")
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}")
    chosen = [TARGETS[t] for t in args.targets] or list(TARGETS.values())
    if args.replay is not None:
        results = [check(t, args.replay.read_bytes()) for t in chosen]
        for t, result in zip(chosen, results, strict=True):
            print(f"{t.name}: {result or 'ok'}")
        return 1 if any(results) else 0
    args.out.mkdir(parents=True, exist_ok=True)
    found = sum(_run_one(t, args.count, args.seed, args.time_limit, args.out) for t in chosen)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
