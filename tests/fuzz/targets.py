"""One fuzz target per parser of outside input: its seeds, how it runs, the one error it may raise.

`check(target, data)` runs one input under the write guard and returns a finding (text) when the
parser raised anything but its documented error class, or wrote anything; None when it behaved.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.config.catalog import policy_fail
from sandbox.distribution import archive
from sandbox.distribution.bundle_format import HEADER_NAME, BundleKind, parse_header
from sandbox.distribution.bundle_reader import verify_bundle
from sandbox.distribution.layer_scan import LayerScanner
from sandbox.engine import http
from sandbox.engine.endpoint import Endpoint
from sandbox.errors import BundleError, ManifestError, PolicyError, ProviderError
from sandbox.host import xauth
from sandbox.host.documents import load_json, load_toml
from sandbox.policy.layer_files import dump_override, parse_override, parse_site_policy
from sandbox.policy.layers import UserOverride
from sandbox.policy.manifest import (
    LABEL_MANIFEST,
    LABEL_MANIFEST_VERSION,
    canonical_json,
    manifest_from_labels,
    parse_manifest_toml,
)
from sandbox.policy.vocabulary import parse_permission
from sandbox.probes import docker, x11
from sandbox.providers.pulse.protocol import (
    CLIENT_MAX_CONTROL,
    CLIENT_MAX_DATA,
    FrameDecoder,
    parse_packet,
)
from sandbox.providers.pulse.tagstruct import parse_tagstruct, serialize_tagstruct
from tests.distribution.bundle_factory import (
    Knobs,
    build_bundle,
    layer_tar,
    manifest_text,
    tiny_manifest,
)
from tests.fuzz.guard import no_writes
from tests.fuzz.mutate import Mutator

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "sandbox" / "policies"
PULSE_FIXTURES = ("paplay", "pactl_list", "parecord")


class NeverRaisedError(Exception):
    """The error class of a target that may raise nothing at all (it returns facts)."""


@dataclass(frozen=True)
class Target:
    name: str
    seeds: Callable[[], list[bytes]]
    run: Callable[[object], object]
    allowed: type[Exception]
    # A structured generator (bundle files); by default the byte mutator over the seeds.
    generate: Callable[[Mutator], bytes] | None = field(default=None)
    # Runs before the write guard is armed (the bundle file is written here); gives run's input.
    prepare: Callable[[bytes], object] = field(default=lambda data: data)


# --- seeds ---------------------------------------------------------------------------------------


def _manifest_seeds() -> list[bytes]:
    texts = [manifest_text(), manifest_text("2.0", "network = true\ngpu = true")]
    texts += [p.read_text() for p in sorted((POLICIES / "examples").glob("*.toml"))]
    texts.append(texts[0] + '[limits]\nmemory = "2G"\ncpus = 1.5\npids = 512\n')
    return [t.encode() for t in texts]


def _label_seeds() -> list[bytes]:
    return [canonical_json(tiny_manifest(v)).encode() for v in ("1.0.0", "2.5")]


def _site_seeds() -> list[bytes]:
    return [
        (POLICIES / "site-example.toml").read_bytes(),
        b'version = 1\n[deny]\ncapabilities = ["webcam"]\nmax-risk = "high"\n'
        b'[limits]\nmax-memory = "4GiB"\nmax-cpus = 2.5\nmax-pids = 4096\n'
        b'[apps."org.example.App"]\ndeny = ["network"]\n',
    ]


def _override_seeds() -> list[bytes]:
    grant = frozenset({parse_permission("network")})
    return [dump_override(UserOverride("org.example.App", grant, frozenset())).encode()]


def _header_seeds() -> list[bytes]:
    out = []
    for knobs in (
        Knobs(),
        Knobs(kind=BundleKind.THIN, omit=1),
        Knobs(kind=BundleKind.DELTA, omit=1),
    ):
        layers = [layer_tar({"a": b"1"}), layer_tar({"b": b"2"})]
        with tarfile.open(fileobj=io.BytesIO(build_bundle(tiny_manifest(), layers, knobs))) as t:
            member = t.extractfile(HEADER_NAME)
            assert member is not None
            out.append(member.read().rstrip())
    return out


def _archive_seeds() -> list[bytes]:
    config = {"config": {"Labels": {"a": "b"}}, "rootfs": {"diff_ids": ["sha256:" + "a" * 64]}}
    entry = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
    return [json.dumps(config).encode(), json.dumps(entry).encode()]


def _layer_seeds() -> list[bytes]:
    icon = {"opt/tiny/icon.png": b"\x89PNG" + b"x" * 100, "opt/tiny/run": b"#!/bin/sh\n"}
    whiteout = {"opt/tiny/.wh.icon.png": b"", "opt/.wh..wh..opq": b""}
    return [layer_tar(icon), layer_tar(whiteout), layer_tar({"opt/tiny/" + "n" * 150: b"long"})]


def _pulse_payloads() -> list[bytes]:
    from tests.providers.pulse.pulse_helpers import frames

    return [f.payload for n in PULSE_FIXTURES for d in "CS" for f in frames(n, d) if f.is_control]


def _pulse_streams() -> list[bytes]:
    from tests.providers.pulse.pulse_helpers import records

    return [b"".join(c for m, c in records(n) if m == "C")[:4096] for n in PULSE_FIXTURES]


def _x11_seeds() -> list[bytes]:
    vendor = b"The X.Org Foundation"
    body = bytearray(32) + vendor + b"\0" * (-len(vendor) % 4)
    body[16:18] = len(vendor).to_bytes(2, "little")
    ok = (
        bytes([1, 0])
        + (11).to_bytes(2, "little")
        + bytes(2)
        + (len(body) // 4).to_bytes(2, "little")
    )
    reason = b"No protocol specified\n\0\0"
    failed = bytes([0, 22]) + (11).to_bytes(2, "little") + bytes(2) + (6).to_bytes(2, "little")
    auth = bytes([2, 0, 0, 0, 0, 0]) + (2).to_bytes(2, "little") + b"denied\0\0"
    return [ok + bytes(body), failed + reason, auth]


def _xauth_seeds() -> list[bytes]:
    entry = xauth.XauthEntry(256, b"host", "99", xauth.MIT_MAGIC_COOKIE, bytes(range(16)))
    return [xauth.encode([entry, entry])]


def _http_seeds() -> list[bytes]:
    body = b'{"Version": "27.0", "ApiVersion": "1.46"}'
    return [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.0 404 Not Found\r\n\r\nno such image",
    ]


def _engine_seeds() -> list[bytes]:
    version = {"Version": "27.0", "ApiVersion": "1.46", "Components": [{"Name": "Engine"}]}
    info = {
        "CgroupDriver": "systemd",
        "CgroupVersion": "2",
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=rootless"],
        "Runtimes": {"runc": {}},
        "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=0"}],
        "CDISpecDirs": ["/etc/cdi"],
    }
    return [json.dumps(version).encode() + b"\n\n" + json.dumps(info).encode()]


# --- runs ----------------------------------------------------------------------------------------


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _manifest_toml(data: bytes) -> None:
    parse_manifest_toml(_text(data))


def _manifest_labels(data: bytes) -> None:
    version, sep, text = data.partition(b"\n") if data[:2] == b"1\n" else (b"1", b"", data)
    labels = {LABEL_MANIFEST: _text(text), LABEL_MANIFEST_VERSION: _text(version)}
    manifest_from_labels(labels)
    del sep


def _site_policy(data: bytes) -> None:
    parse_site_policy(load_toml(data, policy_fail("site.toml"), max_bytes=256 * 1024), "site.toml")


def _override(data: bytes) -> None:
    doc = load_toml(data, policy_fail("o.toml"), max_bytes=256 * 1024)
    parse_override(doc, "o.toml", "org.example.App")


def _docker_archive(data: bytes) -> None:
    with contextlib.suppress(BundleError):
        archive.image_manifest(data, "manifest.json")
    archive.image_config(data, "config")


def _layer_scan(data: bytes) -> None:
    scanner = LayerScanner("opt/tiny/icon.png", 1024)
    step = 1 + (data[0] if data else 0) * 7
    for i in range(0, len(data), step):
        scanner.feed(data[i : i + step])
    scanner.result()


def _tagstruct(data: bytes) -> None:
    values = parse_tagstruct(data)
    assert serialize_tagstruct(values) == data, "a parsed tagstruct must serialize back"


def _frames(data: bytes) -> None:
    decoder = FrameDecoder(CLIENT_MAX_CONTROL, CLIENT_MAX_DATA)
    cut = len(data) // 2
    for frame in decoder.feed(data[:cut]) + decoder.feed(data[cut:]):
        if frame.is_control:
            parse_packet(frame)


def _x11_setup(data: bytes) -> None:
    head = data[:8].ljust(8, b"\0")
    header = x11.parse_setup_header(head)
    x11.parse_setup_reply(header, data[8 : 8 + header.extra_bytes])


def _http(data: bytes) -> None:
    http.read_response(io.BytesIO(data), "GET")


class _EngineAnswerError(Exception):
    pass


def _engine_answers(data: bytes) -> None:
    version_text, _, info_text = data.partition(b"\n\n")

    def fail(_at: str, problem: str) -> _EngineAnswerError:
        return _EngineAnswerError(problem)

    version = load_json(version_text, fail, max_bytes=http.MAX_BODY, duplicates=True)
    info = load_json(info_text, fail, max_bytes=http.MAX_BODY, duplicates=True)
    if isinstance(version, dict) and isinstance(info, dict):
        docker.parse_engine(version, info, Endpoint("unix:///x", "fuzz", "/x"))


# --- the bundle file: built valid, one part made hostile, the rest kept consistent ------------


@dataclass
class _Parts:
    header: dict[str, object]
    config: dict[str, object]
    layers: list[bytes]
    oci: bool


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bundle_parts() -> list[_Parts]:
    out = []
    for oci in (False, True):
        data = build_bundle(tiny_manifest(), knobs=Knobs(oci_layout=oci))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            docs = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
        entry = json.loads(docs["manifest.json"])[0]
        layers = [docs[name] for name in entry["Layers"]]
        header, config = json.loads(docs[HEADER_NAME]), json.loads(docs[entry["Config"]])
        out.append(_Parts(header, config, layers, oci))
    return out


def _assemble(parts: _Parts, mut: Mutator, which: str) -> bytes:
    rng = mut.rng
    layers = [mut.mutate(layer) if which == "layer" else layer for layer in parts.layers]
    config = json.loads(json.dumps(parts.config))
    config["rootfs"]["diff_ids"] = [f"sha256:{_sha(layer)}" for layer in layers]
    labels = config["config"]["Labels"]
    if which == "label":
        label = mut.mutate(labels[LABEL_MANIFEST].encode())
        labels[LABEL_MANIFEST] = label.decode("utf-8", "replace")
    config_bytes = json.dumps(config).encode()
    if which == "config":
        config_bytes = mut.mutate(config_bytes)
    config_hex = _sha(config_bytes)
    prefix = "blobs/sha256/" if parts.oci else ""
    names = [f"{prefix}{_sha(layer)}" + ("" if parts.oci else "/layer.tar") for layer in layers]
    config_name = f"{prefix}{config_hex}" + ("" if parts.oci else ".json")
    header = json.loads(json.dumps(parts.header))
    header["image"]["id"] = f"sha256:{config_hex}"
    header["image"]["layers"] = [{"diff-id": f"sha256:{_sha(x)}", "size": len(x)} for x in layers]
    header_bytes = json.dumps(header).encode()
    if which == "header":
        header_bytes = mut.mutate(header_bytes)
    entry = [{"Config": config_name, "RepoTags": header["image"]["tags"], "Layers": names}]
    manifest_json = json.dumps(entry).encode()
    if which == "manifest.json":
        manifest_json = mut.mutate(manifest_json)
    members = [
        (HEADER_NAME, header_bytes),
        *zip(names, layers, strict=True),
        (config_name, config_bytes),
    ]
    members.append(("manifest.json", manifest_json))
    buf = io.BytesIO()
    fmt = rng.choice((tarfile.PAX_FORMAT, tarfile.GNU_FORMAT))
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = buf.getvalue()
    return mut.mutate(out) if which == "tar" else out


_PARTS: list[_Parts] = []
_KINDS = ("header", "config", "label", "manifest.json", "layer", "tar", "tar")


def _bundle_input(mut: Mutator) -> bytes:
    if not _PARTS:
        _PARTS.extend(_bundle_parts())
    return _assemble(mut.rng.choice(_PARTS), mut, mut.rng.choice(_KINDS))


class _BundleFile:
    """verify_bundle on a file: the input is written first, outside the guard."""

    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def path(self) -> Path:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="sandbox-fuzz-")
        return Path(self._dir.name) / "input.sbx"


_FILE = _BundleFile()


def _write(data: bytes) -> Path:
    path = _FILE.path()
    path.write_bytes(data)
    return path


def _bundle_seeds() -> list[bytes]:
    return [
        build_bundle(tiny_manifest()),
        build_bundle(tiny_manifest(), knobs=Knobs(oci_layout=True)),
    ]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "manifest-toml", _manifest_seeds, lambda d: parse_manifest_toml(_text(d)), ManifestError
        ),
        Target("manifest-labels", _label_seeds, _manifest_labels, ManifestError),
        Target("site-policy", _site_seeds, _site_policy, PolicyError),
        Target("user-override", _override_seeds, _override, PolicyError),
        Target("bundle-header", _header_seeds, parse_header, BundleError),
        Target("bundle-file", _bundle_seeds, verify_bundle, BundleError, _bundle_input, _write),
        Target("docker-archive-json", _archive_seeds, _docker_archive, BundleError),
        Target("layer-scan", _layer_seeds, _layer_scan, NeverRaisedError),
        Target("pulse-tagstruct", _pulse_payloads, _tagstruct, ProviderError),
        Target("pulse-frames", _pulse_streams, _frames, ProviderError),
        Target("x11-setup", _x11_seeds, _x11_setup, NeverRaisedError),
        Target("xauth", _xauth_seeds, xauth.decode, ProviderError),
        Target("engine-http", _http_seeds, _http, http.BadResponseError),
        Target("engine-answers", _engine_seeds, _engine_answers, _EngineAnswerError),
    )
}


def check(target: Target, data: bytes) -> str | None:
    """None when `target` took `data` well; otherwise what went wrong, with the traceback."""
    given = target.prepare(data)
    with no_writes() as writes:
        try:
            target.run(given)
        except target.allowed:
            pass
        except Exception:  # the finding: anything but the documented error class
            return traceback.format_exc(limit=-6)
    if writes:
        return f"wrote while parsing: {writes[:3]}"
    return None


def inputs(target: Target, count: int, rng_seed: int = 0) -> Callable[[], bytes]:
    """The generator of `target`'s inputs (call it `count` times)."""
    mut = Mutator(target.seeds(), rng_seed)
    if target.generate is not None:
        gen = target.generate
        return lambda: gen(mut)
    return mut.one
