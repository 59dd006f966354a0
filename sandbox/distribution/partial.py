"""Loading archives that leave layers to a local image: find that image, load, or rebuild; no UI.

Docker's graphdriver store loads a docker-archive whose manifest.json lists layers it already
has (by chain id) without their tars (moby PR #18727). Podman and the containerd image store
refuse such archives: for them, and for any refusal, the full archive is rebuilt on the client
from the partial one plus the missing layer tars streamed out of `docker save` of the local
image that has them.
"""

from __future__ import annotations

import enum
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sandbox.distribution import archive
from sandbox.distribution.bundle_format import HEADER_NAME, BaseRef
from sandbox.distribution.signing import SIGNATURE_NAME
from sandbox.engine.adapter import DockerAdapter, ImageDetails
from sandbox.errors import BundleError, LaunchError


class PartialLoad(enum.StrEnum):
    AUTO = "auto"  # send the partial archive; rebuild on the client if the engine refuses
    RECONSTRUCT = "reconstruct"  # always rebuild on the client (engines known to refuse)


class LoadMethod(enum.StrEnum):
    DIRECT = "direct"  # the engine took the partial archive
    RECONSTRUCTED = "reconstructed"  # the client rebuilt the full archive


@dataclass(frozen=True)
class LoadOutcome:
    method: LoadMethod
    engine_refusal: str | None  # what the engine said to the partial archive, when it refused


def describe(base: BaseRef) -> str:
    name = f"{base.name} " if base.name else ""
    return f"{name}({base.image_id[:19]}, {len(base.diff_ids)} layers)"


def find_source(adapter: DockerAdapter, base: BaseRef, needed: tuple[str, ...]) -> ImageDetails:
    """A local image holding every layer in `needed`: the recorded image, its name, any other.

    Layers are matched by diff_id, so a base pulled or built again under another name still
    serves; BundleError names the base when none holds them (nothing was loaded yet).
    """
    want = set(needed)
    tried: set[str] = set()
    candidates: list[str] = [base.image_id]
    if base.name:
        candidates.append(base.name)
    for ref in [*candidates, *adapter.images.ids()]:
        details = adapter.images.details(ref)
        if details is None or details.id in tried:
            continue
        tried.add(details.id)
        if want <= set(details.diff_ids):
            return details
    raise BundleError(
        HEADER_NAME,
        f"base image {describe(base)} is not installed here: {len(want)} layer(s) this file "
        "leaves out are in no local image; load that base first, or use a full bundle",
    )


def reconstruct(
    partial: Iterator[bytes],
    source: Iterator[bytes],
    diff_ids: tuple[str, ...],
    out: Path,
    source_name: str,
) -> int:
    """Write at `out` the full docker-archive: the partial archive's members plus the layer
    tars it lacks, taken from `source` (an engine's `docker save` stream); returns its size."""
    with archive.open_output(out) as f:
        writer = archive.ArchiveWriter(f)
        skip = archive.IMAGE_LEVEL | {HEADER_NAME, SIGNATURE_NAME}
        first = archive.copy_archive(
            partial, writer, drop_digest=lambda _d: False, drop_name=lambda n: n in skip
        )
        data = first.small.get("manifest.json")
        if data is None:
            raise BundleError("manifest.json", "the partial archive has none")
        config, listed, tags = archive.image_manifest(data, "manifest.json")
        if len(listed) != len(diff_ids):
            raise BundleError(
                "manifest.json", f"lists {len(listed)} layers, the image has {len(diff_ids)}"
            )
        names: dict[str, str] = {}
        for name, diff_id in zip(listed, diff_ids, strict=True):
            digest = first.resolve(name)
            if digest is not None:
                names[diff_id] = name
        missing = {d.removeprefix("sha256:") for d in diff_ids if d not in names}
        taken: set[str] = set()

        def unwanted(digest: str) -> bool:
            if digest in missing and digest not in taken:
                taken.add(digest)
                return False
            return True

        second = archive.copy_archive(
            source,
            writer,
            drop_digest=unwanted,
            prefix="sandbox-base/",
            entries=False,
            stop=lambda: taken == missing,
        )
        by_digest = {second.digests[n]: n for n in second.kept}
        layers = []
        for diff_id in diff_ids:
            where = names.get(diff_id) or by_digest.get(diff_id.removeprefix("sha256:"))
            if where is None:
                raise BundleError(
                    f"layer {diff_id}", f"neither in the file nor in the local image {source_name}"
                )
            layers.append(where)
        writer.add_bytes("manifest.json", archive.manifest_json(config, tags, layers))
        writer.finish()
        return f.tell()


def load_partial(
    adapter: DockerAdapter,
    open_partial: Callable[[], Iterator[bytes]],
    size: int | None,
    diff_ids: tuple[str, ...],
    source_ref: str,
    *,
    mode: PartialLoad = PartialLoad.AUTO,
    workdir: Path | None = None,
) -> LoadOutcome:
    """Load the partial archive `open_partial()` gives (called again for a rebuild)."""
    refusal: str | None = None
    if mode is PartialLoad.AUTO:
        try:
            adapter.images.load_stream(open_partial(), size)
            return LoadOutcome(LoadMethod.DIRECT, None)
        except LaunchError as exc:
            refusal = str(exc)
    with tempfile.TemporaryDirectory(prefix="sandbox-rebuild-", dir=workdir) as tmp:
        full = Path(tmp) / "image.tar"
        length = reconstruct(
            open_partial(), adapter.images.save_stream(source_ref), diff_ids, full, source_ref
        )

        def chunks() -> Iterator[bytes]:
            with full.open("rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk

        try:
            adapter.images.load_stream(chunks(), length)
        except LaunchError as exc:
            if refusal is None:
                raise
            raise LaunchError(f"{exc} (the partial archive was refused first: {refusal})") from exc
    return LoadOutcome(LoadMethod.RECONSTRUCTED, refusal)
