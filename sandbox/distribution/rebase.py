"""Rebase an installed app onto a patched base without a registry; never prints.

The app's own layers are kept byte for byte (same diff_ids); only the image config changes:
rootfs.diff_ids = new base's + the app's, history = new base's + the app's own steps, base
labels. The new docker-archive carries the app layer tars only (the new base is local), is
loaded under a new tag, smoke-checked, and only then recorded as the app's image.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import json
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sandbox.distribution import archive
from sandbox.distribution.bundle_format import BaseRef
from sandbox.distribution.installed import InstalledApp
from sandbox.distribution.partial import LoadOutcome, PartialLoad, load_partial
from sandbox.distribution.update import installed_or_fail, switch_to
from sandbox.engine.adapter import DockerAdapter, HistoryEntry, ImageDetails
from sandbox.errors import BundleError, LaunchError, SandboxError
from sandbox.policy.manifest import LABEL_MANIFEST

LABEL_BASE_NAME: Final = "org.sandbox-apps.base.name"
LABEL_BASE_ID: Final = "org.sandbox-apps.base.id"
LABEL_BASE_DIFF_IDS: Final = "org.sandbox-apps.base.diff-ids"  # comma-separated, bottom first
LABEL_BASE_LINEAGE: Final = "org.sandbox-apps.base.lineage"  # set by base image builders
SMOKE_TIMEOUT_S: Final = 5.0


class OldBaseFrom(enum.StrEnum):
    OPTION = "--from"
    RECORD = "install record"
    LABELS = "image labels"
    LOCAL_PREFIX = "local image with the longest proper layer prefix"


@dataclass(frozen=True)
class SmokeResult:
    passed: bool
    detail: str  # "exited 0", "still running after 5 s", "exited 3", "failed to start: ..."
    seconds: float


@dataclass(frozen=True)
class RebaseResult:
    app: InstalledApp  # now installed (its previous is the pre-rebase version)
    old_base: BaseRef
    old_base_from: OldBaseFrom
    new_base: BaseRef
    tag: str
    load: LoadOutcome
    smoke: SmokeResult
    seconds_build_load: float  # archive writing + load, the part comparable to `docker load`


def base_from_labels(labels: Mapping[str, str]) -> BaseRef | None:
    raw = labels.get(LABEL_BASE_DIFF_IDS)
    if not raw or LABEL_BASE_ID not in labels:
        return None
    return BaseRef(
        labels.get(LABEL_BASE_NAME) or None,
        labels[LABEL_BASE_ID],
        tuple(d for d in raw.split(",") if d),
    )


def sits_on(app: tuple[str, ...], base: tuple[str, ...]) -> bool:
    return 0 < len(base) < len(app) and app[: len(base)] == base


def find_old_base(
    adapter: DockerAdapter, record: InstalledApp, app: ImageDetails, from_ref: str | None
) -> tuple[BaseRef, OldBaseFrom]:
    """The base the app sits on: --from when given, else the recorded one, else the local
    image whose layers are the longest proper prefix of the app's."""
    if from_ref is not None:
        d = adapter.images.details(from_ref)
        if d is None:
            raise BundleError("--from", f"image {from_ref} not found")
        if not sits_on(app.diff_ids, d.diff_ids):
            raise BundleError("--from", f"{from_ref}'s layers are not a proper prefix of the app's")
        return BaseRef(from_ref, d.id, d.diff_ids), OldBaseFrom.OPTION
    for base, source in (
        (record.base, OldBaseFrom.RECORD),
        (base_from_labels(app.labels), OldBaseFrom.LABELS),
    ):
        if base is not None and sits_on(app.diff_ids, base.diff_ids):
            return base, source
    # Ties (several local images with the same layers) go to one that is not itself an app.
    best: tuple[int, bool, ImageDetails] | None = None
    for image_id in adapter.images.ids():
        d = adapter.images.details(image_id)
        if d is None or d.id == app.id or not sits_on(app.diff_ids, d.diff_ids):
            continue
        score = (len(d.diff_ids), LABEL_MANIFEST not in d.labels, d)
        if best is None or score[:2] > best[:2]:
            best = score
    if best is None:
        raise BundleError(
            record.app_id,
            "no base recorded and no local image is a layer prefix of it; name it with --from",
        )
    found = best[2]
    name = found.tags[0] if found.tags else None
    return BaseRef(name, found.id, found.diff_ids), OldBaseFrom.LOCAL_PREFIX


def check_new_base(
    old: BaseRef,
    old_labels: Mapping[str, str],
    new: ImageDetails,
    new_platform: str,
    app_platform: str,
    *,
    force: bool,
) -> None:
    """Refuse another OS/architecture always, another lineage unless `force`."""
    if new_platform != app_platform:
        raise BundleError("--onto", f"is {new_platform}, the app is {app_platform}")
    if new.id == old.image_id:
        raise BundleError("--onto", "is the base the app already sits on")
    if force:
        return
    same_root = bool(new.diff_ids) and new.diff_ids[0] == old.diff_ids[0]
    lineage_old = old_labels.get(LABEL_BASE_LINEAGE)
    lineage_new = new.labels.get(LABEL_BASE_LINEAGE)
    if same_root or (lineage_old and lineage_old == lineage_new):
        return
    raise BundleError(
        "--onto",
        f"is not of the old base's lineage (its first layer differs and no "
        f"{LABEL_BASE_LINEAGE} label matches: {lineage_old!r} vs {lineage_new!r}); "
        "pass --force if you know the app runs on it",
    )


def _iso(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def base_history(entries: tuple[HistoryEntry, ...], layers: int, name: str) -> list[dict[str, Any]]:
    """Config history entries for a base known only through `docker history`, whose rows do
    not say which steps made no layer: sizes decide when they can; else one row per layer."""

    def row(e: HistoryEntry, empty: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"created": _iso(e.created), "created_by": e.created_by}
        if e.comment:
            out["comment"] = e.comment
        if empty:
            out["empty_layer"] = True
        return out

    if sum(1 for e in entries if e.size > 0) == layers:
        return [row(e, e.size == 0) for e in entries]
    if len(entries) == layers:
        return [row(e, False) for e in entries]
    when = entries[-1].created if entries else 0
    return [
        {"created": _iso(when), "created_by": f"layer {i} of base {name} (rebased by sandbox)"}
        for i in range(layers)
    ]


def app_history(
    history: list[dict[str, Any]], base_layers: int, base_rows: int | None
) -> list[dict[str, Any]]:
    """The app's own rows: after the old base's `base_rows` rows, or after the row that made
    its `base_layers`-th layer when the old base's history is unknown."""
    if base_rows is None:
        seen = 0
        base_rows = len(history)
        for i, h in enumerate(history):
            if not h.get("empty_layer"):
                seen += 1
                if seen == base_layers:
                    base_rows = i + 1
                    break
    return history[base_rows:]


def rebased_config(
    config: dict[str, Any],
    *,
    app_layers: tuple[str, ...],
    new_base: BaseRef,
    new_history: list[dict[str, Any]],
    own_history: list[dict[str, Any]],
    new_lineage: str | None,
) -> dict[str, Any]:
    """The app's config with the new base underneath; pure. Non-empty history rows must match
    the layers, as the engine's history expects."""
    own_layers = sum(1 for h in own_history if not h.get("empty_layer"))
    if own_layers != len(app_layers):
        raise BundleError(
            "image config",
            f"history has {own_layers} app layer rows for {len(app_layers)} app layers",
        )
    out: dict[str, Any] = json.loads(json.dumps(config))
    out["rootfs"] = {"type": "layers", "diff_ids": [*new_base.diff_ids, *app_layers]}
    out["history"] = [*new_history, *own_history]
    cfg = out.setdefault("config", {})
    labels = dict(cfg.get("Labels") or {})
    labels[LABEL_BASE_ID] = new_base.image_id
    labels[LABEL_BASE_DIFF_IDS] = ",".join(new_base.diff_ids)
    if new_base.name:
        labels[LABEL_BASE_NAME] = new_base.name
    else:
        labels.pop(LABEL_BASE_NAME, None)
    if new_lineage:
        labels[LABEL_BASE_LINEAGE] = new_lineage
    cfg["Labels"] = labels
    return out


def rebase_tag(record: InstalledApp, new_base_id: str) -> str:
    repo = (
        record.tags[0].rpartition(":")[0] if record.tags else f"sandbox-app/{record.app_id.lower()}"
    )
    return f"{repo}:{record.version}-rebase-{new_base_id.removeprefix('sha256:')[:12]}"


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def build_rebased_archive(
    adapter: DockerAdapter,
    app: ImageDetails,
    *,
    app_layers: tuple[str, ...],
    config_for: Any,
    out: Path,
    tag: str,
) -> tuple[str, int]:
    """Write the docker-archive of the rebased image at `out`: the app's layer tars (from
    `docker save`), the new config, manifest.json naming the new base's layers without tars.
    `config_for(old_config) -> new_config`. Returns (new image id, archive size)."""
    wanted = {d.removeprefix("sha256:") for d in app_layers}
    with archive.open_output(out) as f:
        writer = archive.ArchiveWriter(f)
        config_name = f"{app.id.removeprefix('sha256:')}.json"
        seen: set[str] = set()
        copied = archive.CopyResult()

        def drop(digest: str) -> bool:
            if digest in wanted:
                seen.add(digest)
                return False
            return True

        # The engine streams the whole image, base layers included; stop reading once the
        # app's layers and its config have gone by (member order is the engine's, not ours).
        archive.copy_archive(
            adapter.images.save_stream(app.id),
            writer,
            drop_digest=drop,
            drop_name=lambda n: n.endswith(".json") or n in archive.IMAGE_LEVEL,
            entries=False,
            stop=lambda: seen == wanted and config_name in copied.small,
            into=copied,
        )
        old_config = copied.small.get(config_name)
        if old_config is None:
            data = copied.small.get("manifest.json")
            if data is None:
                raise BundleError("engine archive", "has no manifest.json")
            name, _, _ = archive.image_manifest(data, "engine archive")
            old_config = copied.small.get(name)
        if old_config is None:
            raise BundleError("engine archive", f"has no config for {app.id[:19]}")
        new_config = config_for(archive.image_config(old_config, "image config"))
        body = json.dumps(new_config, separators=(",", ":")).encode()
        hexid = hashlib.sha256(body).hexdigest()
        writer.add_bytes(f"{hexid}.json", body)
        by_digest = {copied.digests[n]: n for n in copied.kept}
        layers = []
        for d in new_config["rootfs"]["diff_ids"]:
            layers.append(
                by_digest.get(
                    d.removeprefix("sha256:"), f"sandbox-base/{d.removeprefix('sha256:')}/layer.tar"
                )
            )
        missing = [d for d in app_layers if d.removeprefix("sha256:") not in by_digest]
        if missing:
            raise BundleError("engine archive", f"has no tar for app layer {missing[0]}")
        writer.add_bytes("manifest.json", archive.manifest_json(f"{hexid}.json", [tag], layers))
        writer.finish()
        return f"sha256:{hexid}", f.tell()


def smoke_check(
    image: str,
    app: InstalledApp,
    command: tuple[str, ...],
    timeout_s: float,
    engine_url: str | None,
) -> SmokeResult:
    """Run `image` as the installed `app` it is to become (same plan and hardening as `sandbox
    run --yes`); passes when the command exits 0 or is still running after `timeout_s`."""
    import io

    from sandbox.distribution import resolve
    from sandbox.runtime import session as rt

    started = time.monotonic()
    try:
        prepared = resolve.plan_candidate(image, app, engine_url=engine_url)
        if command:
            plan = dataclasses.replace(
                prepared.plan, app=dataclasses.replace(prepared.plan.app, command=command)
            )
            prepared = dataclasses.replace(prepared, plan=plan)
        out = io.BytesIO()
        sess = rt.launch(prepared, stdio=rt.Stdio(stdout=out, stderr=out))
    except SandboxError as exc:
        return SmokeResult(False, f"failed to start: {exc}", time.monotonic() - started)
    codes: list[int] = []
    waiter = threading.Thread(target=lambda: codes.append(sess.wait()), daemon=True)
    waiter.start()
    waiter.join(timeout_s)
    if waiter.is_alive():
        sess.stop()
        waiter.join(30)
        return SmokeResult(True, f"still running after {timeout_s:g} s", time.monotonic() - started)
    code = codes[0] if codes else -1
    tail = out.getvalue()[-300:].decode(errors="replace").strip()
    detail = f"exited {code}" + (f": {tail}" if code and tail else "")
    return SmokeResult(code == 0, detail, time.monotonic() - started)


def rebase(
    app_id: str,
    onto: str,
    adapter: DockerAdapter,
    data_home: Path,
    *,
    from_ref: str | None = None,
    force: bool = False,
    wait_s: float = 0.0,
    smoke_timeout_s: float = SMOKE_TIMEOUT_S,
    partial_load: PartialLoad = PartialLoad.AUTO,
    engine_url: str | None = None,
    workdir: Path | None = None,
) -> RebaseResult:
    """Put APP's own layers on `onto`, check it runs, and switch to it (previous kept)."""
    record = installed_or_fail(app_id, data_home)
    app = adapter.images.details(record.image_id)
    if app is None:
        raise BundleError(app_id, f"its image {record.image_id[:19]} is not in the engine")
    new = adapter.images.details(onto)
    if new is None:
        raise BundleError("--onto", f"image {onto} not found")
    old, old_from = find_old_base(adapter, record, app, from_ref)
    old_details = adapter.images.details(old.image_id)
    old_labels = old_details.labels if old_details is not None else app.labels
    platforms = [adapter.images.platform(r) for r in (new.id, app.id)]
    new_p, app_p = (
        f"{p.os}/{p.architecture}{'/' + p.variant if p.variant else ''}" if p else "?"
        for p in platforms
    )
    check_new_base(old, old_labels, new, new_p, app_p, force=force)
    app_layers = app.diff_ids[len(old.diff_ids) :]
    new_ref = BaseRef(
        onto if onto in new.tags else (new.tags[0] if new.tags else None), new.id, new.diff_ids
    )
    new_rows = base_history(
        adapter.images.history(new.id), len(new.diff_ids), new_ref.name or new.id[:19]
    )
    # The old base's own history is not used: an image found by its layers may carry extra
    # metadata rows (a LABEL) the app never had; the rows are cut after its last layer's row.
    old_rows = None
    tag = rebase_tag(record, new.id)

    def config_for(config: dict[str, Any]) -> dict[str, Any]:
        own = app_history(list(config.get("history") or []), len(old.diff_ids), old_rows)
        return rebased_config(
            config,
            app_layers=app_layers,
            new_base=new_ref,
            new_history=new_rows,
            own_history=own,
            new_lineage=new.labels.get(LABEL_BASE_LINEAGE),
        )

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sandbox-rebase-", dir=workdir) as tmp:
        path = Path(tmp) / "rebased.tar"
        new_id, size = build_rebased_archive(
            adapter, app, app_layers=app_layers, config_for=config_for, out=path, tag=tag
        )
        outcome = load_partial(
            adapter,
            lambda: _file_chunks(path),
            size,
            (*new.diff_ids, *app_layers),
            new.id,
            mode=partial_load,
            workdir=workdir,
        )
    seconds = time.monotonic() - t0
    loaded = adapter.images.details(new_id)
    if loaded is None:
        raise LaunchError(f"the engine did not keep the rebased image {new_id[:19]}")
    if loaded.diff_ids[len(new.diff_ids) :] != app_layers:
        raise LaunchError("the rebased image's app layers differ from the app's")
    smoke = smoke_check(tag, record, record.manifest.app.smoke, smoke_timeout_s, engine_url)
    if not smoke.passed:
        adapter.images.remove(tag)
        raise LaunchError(
            f"the rebased image failed its smoke check ({smoke.detail}); "
            f"{app_id} still runs {record.image_id[:19]}"
        )
    # Local: the app keeps its id and publisher pin; no publisher signed this image.
    updated = dataclasses.replace(
        record,
        image_id=new_id,
        tags=(tag,),
        base=new_ref,
        previous=None,
        signed_by=None,
        rebased_by_user=True,
    )
    switch_to(record, updated, adapter, data_home, wait_s=wait_s)
    final = installed_or_fail(app_id, data_home)
    return RebaseResult(final, old, old_from, new_ref, tag, outcome, smoke, seconds)
