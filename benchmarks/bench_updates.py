"""Thin and delta file sizes against the full file, and rebase against `docker load`, one run.

Usage: python benchmarks/bench_updates.py [BASE]. Builds demo v1/v2 on BASE and a patched BASE
(one marker layer), like integration/test_updates.py. Sizes: each file against the full one and
against the physical minimum (the tars of the layers it must carry). Rebase: `sandbox rebase`'s
archive writing + load against `docker load -i` of an archive holding just the app layers on
the patched base (what the engine must do either way), in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from integration.test_updates import PREFIX, build, demo_context, diff_ids  # noqa: E402


def run(*args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("base", nargs="?", default="sandbox-test/base:bookworm")
    base = ap.parse_args().base
    # PREFIX is unique per process (pid and a token): a concurrent test run keeps its tags.
    v1, v2, patched = f"{PREFIX}-demo:1.0.0", f"{PREFIX}-demo:2.0.0", f"{PREFIX}-base:patched"
    made: list[str] = [v1, v2, patched]
    try:
        measure(base, v1, v2, patched, made)
    finally:
        for tag in made:
            subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)


def measure(base: str, v1: str, v2: str, patched: str, made: list[str]) -> None:
    """Sizes and the rebase timing; every tag it creates is appended to `made`."""
    with tempfile.TemporaryDirectory(prefix="bench-updates-") as d:
        tmp = Path(d)
        build(demo_context(tmp, "1.0.0", base), v1)
        build(demo_context(tmp, "2.0.0", base, "\n# version 2\n"), v2)
        (tmp / "p").mkdir()
        (tmp / "p" / "Dockerfile").write_text(f"FROM {base}\nRUN echo p > /etc/marker\n")
        build(tmp / "p", patched)
        files = {
            "full": ("export", v2),
            "thin": ("export", v2, "--thin", "--base", base),
            "delta": ("export", v2, "--delta-from", v1),
        }
        sizes = {}
        for kind, args in files.items():
            out = tmp / f"{kind}.sbx"
            run("sandbox", *args, "-o", str(out))
            sizes[kind] = out.stat().st_size
        layer_bytes = {}
        save = tmp / "v2.tar"
        run("docker", "save", "-o", str(save), v2)
        import tarfile

        with tarfile.open(save) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            for name, diff in zip(manifest[0]["Layers"], diff_ids(v2), strict=True):
                layer_bytes[diff] = tar.getmember(name).size
        above_base = sum(layer_bytes[x] for x in diff_ids(v2)[len(diff_ids(base)) :])
        changed = sum(layer_bytes[x] for x in set(diff_ids(v2)) - set(diff_ids(v1)))
        minimum = {"full": sum(layer_bytes.values()), "thin": above_base, "delta": changed}
        print(f"{'file':<6} {'bytes':>12} {'vs full':>9} {'layers needed':>14} {'ratio':>7}")
        for kind, size in sizes.items():
            print(
                f"{kind:<6} {size:>12} {size / sizes['full']:>9.5f} {minimum[kind]:>14} "
                f"{size / max(1, minimum[kind]):>7.2f}"
            )

        env = dict(os.environ, XDG_DATA_HOME=str(tmp / "data"), XDG_CONFIG_HOME=str(tmp / "c"))
        run("sandbox", "export", v1, "-o", str(tmp / "v1.sbx"))
        run("sandbox", "install", "--yes", str(tmp / "v1.sbx"), env=env)
        t0 = time.perf_counter()
        said = run("sandbox", "rebase", "org.sandbox.Demo", "--onto", patched, env=env)
        total = time.perf_counter() - t0
        build_load = float(said.split(" in ")[1].split(" s")[0])
        record = json.loads((tmp / "data/sandbox/installed/org.sandbox.Demo.json").read_text())
        rebased = record["image-id"]
        archive = tmp / "rebased-app-layers.tar"
        run("docker", "save", "-o", str(archive), rebased)
        tags = record["tags"]
        made.extend(tags)
        run("sandbox", "rollback", "org.sandbox.Demo", env=env)
        run("docker", "rmi", *tags)
        t0 = time.perf_counter()
        run("docker", "load", "-i", str(archive))  # base layers exist: only app layers apply
        plain = time.perf_counter() - t0
        print(
            f"rebase build+load {build_load:.2f} s (whole command incl. smoke {total:.2f} s); "
            f"docker load -i of the same image {plain:.2f} s; ratio {build_load / plain:.2f}"
        )
        run("sandbox", "uninstall", "org.sandbox.Demo", env=env)


if __name__ == "__main__":
    main()
