"""Export and install of a real image against `docker save -o` and `docker load -i`, one run.

Usage: python benchmarks/bench_bundle.py [BASE] [--runs N] [--before REV]. The measured image is
BASE's filesystem re-imported as one fresh layer (so no other local image shares it) with the
demo app's manifest as labels; every load starts with that image removed, so both sides do the full
work. Install is verify + load (what `sandbox install --yes` does, without the prompt); its runs
alternate with `docker load -i`'s so that the host's drift falls on both sides.
--before REV also times export and install through the image client as it was at git revision
REV (sandbox/engine/images.py, or sandbox/engine/adapter.py before the engine package was
split; only that module, everything else is this tree's), in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(fn: Callable[[], object], runs: int, before: Callable[[], object] | None = None) -> float:
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def timed_interleaved(
    fns: list[Callable[[], object]], runs: int, before: Callable[[], object]
) -> list[float]:
    """Median seconds of each of `fns`, run in turn (A B C A B C ...), each after `before`.

    On the shared host `docker load -i` of the same file took 5.4 s to 9.7 s within minutes;
    timing all runs of one side and then all of the other put that drift into the ratio (1.57
    in blocks, 1.08 interleaved, two runs six minutes apart).
    """
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, samples, strict=True):
            before()
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


def _module_at(rev: str, path: str) -> types.ModuleType | None:
    """The module `path` as at `rev`, run here (its imports are this tree's); None if absent."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        ["git", "-C", str(root), "show", f"{rev}:{path}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return None
    module = types.ModuleType(f"_before_{Path(path).stem}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(done.stdout, f"{rev}:{path}", "exec"), module.__dict__)
    return module


class _FlatImages:
    """The image calls of a one-file adapter (before sandbox/engine was split) by today's names."""

    def __init__(self, adapter: Any) -> None:
        self._adapter = adapter

    def __getattr__(self, name: str) -> Any:
        flat = {"ids": "image_ids", "running_containers_of": "running_containers_of"}
        return getattr(self._adapter, flat.get(name, f"image_{name}"))


def adapter_at(rev: str) -> Any:
    """An adapter whose `.images` is the image client of `rev` (sandbox/engine/images.py, or
    the whole sandbox/engine/adapter.py at revisions before the split)."""
    from sandbox.engine.adapter import DockerAdapter

    now = DockerAdapter.from_env()
    images = _module_at(rev, "sandbox/engine/images.py")
    if images is not None:
        return types.SimpleNamespace(images=images.ImageClient(now.images.base_url, now.url))
    module = _module_at(rev, "sandbox/engine/adapter.py")
    assert module is not None, f"{rev} has no sandbox/engine/adapter.py"
    return types.SimpleNamespace(images=_FlatImages(module.DockerAdapter.from_env()))


def build_unique(base: str, tag: str) -> None:
    """BASE's files as one new layer plus the demo manifest labels, named `tag`."""
    from sandbox.cli.manifest_cmd import render_labels
    from sandbox.config.manifest import read_manifest
    from sandbox.policy.manifest import manifest_to_labels

    root = Path(__file__).resolve().parent.parent
    cid = subprocess.run(
        ["docker", "create", base, "true"], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        export = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", f"{tag}-fs"], stdin=export.stdout, check=True,
                       capture_output=True)  # fmt: skip
        export.wait()
    finally:
        subprocess.run(["docker", "rm", cid], capture_output=True, check=False)
    labels = manifest_to_labels(read_manifest(root / "demo" / "sandbox.toml"))
    dockerfile = f"FROM {tag}-fs\n{render_labels(labels, dockerfile=True)}\n"
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile.encode(),
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(["docker", "rmi", f"{tag}-fs"], capture_output=True, check=False)


def verify_signed_vs_plain(
    adapter: Any, tag: str, sbx: Path, runs: int
) -> tuple[float, float, float]:
    """Medians of the verify pass over the unsigned bundle and over the same image exported
    signed (interleaved, page cache warm for both), and of the signed export."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sandbox.distribution.bundle_reader import verify_bundle
    from sandbox.distribution.bundle_writer import export_image
    from sandbox.distribution.signing import SigningKeys

    signed = sbx.with_name("app-signed.sbx")
    keys = SigningKeys(Ed25519PrivateKey.generate())
    export = timed(lambda: export_image(adapter, tag, signed, signer=keys), runs)
    assert verify_bundle(signed).publisher is not None
    plain, signed_s = timed_interleaved(
        [lambda: verify_bundle(sbx), lambda: verify_bundle(signed)], runs, lambda: None
    )
    signed.unlink()
    return plain, signed_s, export


def main() -> None:
    from sandbox.distribution.bundle_reader import stream_verified, verify_bundle
    from sandbox.distribution.bundle_writer import export_image
    from sandbox.engine.adapter import DockerAdapter

    parser = argparse.ArgumentParser()
    parser.add_argument("base", nargs="?", default="sandbox-test/base:bookworm")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", metavar="REV", help="also time the adapter of git REV")
    args = parser.parse_args()
    adapter = DockerAdapter.from_env()
    old = adapter_at(args.before) if args.before else None
    tag = "sandbox-bench/bundle:1"
    build_unique(args.base, tag)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        sbx, tar = Path(tmp) / "app.sbx", Path(tmp) / "app.tar"

        def rmi() -> None:
            subprocess.run(["docker", "rmi", tag], capture_output=True, check=True)

        try:
            save = timed(
                lambda: subprocess.run(["docker", "save", "-o", str(tar), tag], check=True),
                args.runs,
            )
            export = timed(lambda: export_image(adapter, tag, sbx), args.runs)
            export_old = timed(lambda: export_image(old, tag, sbx), args.runs) if old else 0.0
            verify = timed(lambda: verify_bundle(sbx), args.runs)
            v_plain, v_signed, export_signed = verify_signed_vs_plain(adapter, tag, sbx, args.runs)

            def install(through: Any = adapter) -> None:
                bundle = verify_bundle(sbx)
                through.images.load_stream(stream_verified(bundle), bundle.size)

            sides: list[Callable[[], object]] = [
                lambda: subprocess.run(
                    ["docker", "load", "-q", "-i", str(tar)], check=True, capture_output=True
                ),
                install,
            ]
            if old:
                sides.append(lambda: install(old))
            load, inst, *rest = timed_interleaved(sides, args.runs, rmi)
            inst_old = rest[0] if rest else 0.0
        finally:
            subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
        size = sbx.stat().st_size
    mib = size / 1024**2
    print(f"image {tag} (from {args.base}): bundle {mib:.0f} MiB, medians of {args.runs} runs")
    print(f"  docker save -o      {save:6.2f} s")
    print(f"  sandbox export      {export:6.2f} s   ratio {export / save:.2f}")
    if old:
        print(f"    before {args.before:<10} {export_old:6.2f} s   ratio {export_old / save:.2f}")
    print(f"  docker load -i      {load:6.2f} s")
    print(f"  sandbox install     {inst:6.2f} s   ratio {inst / load:.2f}")
    if old:
        print(f"    before {args.before:<10} {inst_old:6.2f} s   ratio {inst_old / load:.2f}")
    print(f"    of which verify   {verify:6.2f} s (one read: file, member and layer hashes, icon)")
    print(f"  export --sign       {export_signed:6.2f} s   ratio {export_signed / save:.2f}")
    print(
        f"  verify unsigned     {v_plain:6.2f} s, signed {v_signed:6.2f} s   "
        f"ratio {v_signed / v_plain:.3f} (interleaved)"
    )


if __name__ == "__main__":
    main()
