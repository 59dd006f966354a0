"""`sandbox run --yes` of a trivial app vs `docker run --rm` with the same flags and image."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time

# Both sides start from the real interpreter / binary path (sys.executable, not a pyenv shim),
# so neither pays for a shim's own start-up.


def _time(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


BENCH_PARENT = ("sandbox-bench", "org.example.Bench")  # docker run's --cgroup-parent below


def _remove_bench_cgroups() -> None:
    """Docker creates the --cgroup-parent dirs in every hierarchy and never removes them."""
    from sandbox.runtime.cgroups import host_hierarchies

    for mount in host_hierarchies():
        for depth in range(len(BENCH_PARENT), 0, -1):  # deepest first; rmdir only empties
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(os.path.join(mount.path, *BENCH_PARENT[:depth]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("image", help="an app image with a sandbox manifest whose command is sh -c")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument(
        "--before",
        metavar="DIR",
        help="also time the sandbox package found in DIR (e.g. `git archive OLD sandbox`)",
    )
    opts = p.parse_args()
    sandbox_cmd = [sys.executable, "-m", "sandbox", "run", "--yes", opts.image, "--", "true"]
    docker_cmd = [
        "docker", "run", "--rm", "--user", "0:0", "--network", "none", "--read-only",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--ipc", "private",
        "--tmpfs", "/tmp:size=256m", "--memory", "2g", "--memory-swap", "2g", "--cpus", "2",
        "--pids-limit", "1024", "--cgroup-parent", "/" + "/".join(BENCH_PARENT),
        "--entrypoint", "/bin/sh", opts.image, "-c", "true",
    ]  # fmt: skip
    before_env = {**os.environ, "PYTHONPATH": opts.before} if opts.before else None
    ours: list[float] = []
    theirs: list[float] = []
    old: list[float] = []
    try:
        for cmd in (sandbox_cmd, docker_cmd):
            _time(cmd)  # warm caches
        for _ in range(opts.runs):  # interleaved, so drift hits every side alike
            ours.append(_time(sandbox_cmd))
            theirs.append(_time(docker_cmd))
            if before_env is not None:
                old.append(_time(sandbox_cmd, before_env))
    finally:
        _remove_bench_cgroups()
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"sandbox run --yes : median {a * 1000:.0f} ms  (min {min(ours) * 1000:.0f})")
    print(f"docker run --rm   : median {b * 1000:.0f} ms  (min {min(theirs) * 1000:.0f})")
    if old:
        c = statistics.median(old)
        print(f"sandbox (before)  : median {c * 1000:.0f} ms  (min {min(old) * 1000:.0f})")
        print(f"ratio before      : {c / b:.2f}")
    print(f"ratio             : {a / b:.2f}  (goal <= 1.00)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
