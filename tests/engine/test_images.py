"""The image client (docker-py's APIClient) against a fake engine socket: streams and errors."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_fake import Answer, serve

from sandbox.engine.adapter import DockerAdapter
from sandbox.errors import BundleError, LaunchError

LOADED = b'{"stream":"Loaded image: app:1\\n"}\r\n{"stream":"Loaded image ID: sha256:ab\\n"}\r\n'
ARCHIVE = bytes(range(256)) * 1000


def _chunks(fail_after: int | None = None) -> Iterator[bytes]:
    for n, i in enumerate(range(0, len(ARCHIVE), 4096)):
        if fail_after is not None and n == fail_after:
            raise BundleError("layer 1", "its digest does not match the header")
        yield ARCHIVE[i : i + 4096]


def test_load_with_a_size_sends_a_content_length_and_reads_the_progress_stream(
    sock_dir: Path,
) -> None:
    engine, adapter = serve(sock_dir, {"/v1.41/images/load": Answer(200, LOADED, chunked=True)})
    with adapter:
        loaded = adapter.images.load_stream(_chunks(), len(ARCHIVE))
    engine.close()
    assert loaded == ("app:1", "sha256:ab")
    (req,) = engine.seen
    assert req.method == "POST" and "quiet=" in req.path
    assert req.headers["content-length"] == str(len(ARCHIVE))
    assert "transfer-encoding" not in req.headers
    assert req.body == ARCHIVE


def test_load_without_a_size_is_chunked(sock_dir: Path) -> None:
    engine, adapter = serve(sock_dir, {"/v1.41/images/load": Answer(200, LOADED, chunked=True)})
    with adapter:
        assert adapter.images.load_stream(_chunks()) == ("app:1", "sha256:ab")
    engine.close()
    (req,) = engine.seen
    assert req.headers.get("transfer-encoding") == "chunked" and req.body == ARCHIVE


@pytest.mark.parametrize("sized", [True, False])
def test_a_failing_chunk_source_aborts_the_upload_with_its_own_error(
    sock_dir: Path, sized: bool
) -> None:
    engine, adapter = serve(sock_dir, {"/v1.41/images/load": Answer(200, LOADED, chunked=True)})
    with adapter, pytest.raises(BundleError, match="digest does not match"):
        adapter.images.load_stream(_chunks(fail_after=3), len(ARCHIVE) if sized else None)
    assert engine.done.wait(5)
    engine.close()
    (req,) = engine.seen
    assert not req.complete  # the engine saw a truncated archive, so loads nothing
    assert len(req.body) < len(ARCHIVE)


def test_an_error_in_the_load_stream_is_a_launch_error(sock_dir: Path) -> None:
    refused = b'{"errorDetail":{"message":"invalid tar header"},"error":"invalid tar header"}\n'
    engine, adapter = serve(sock_dir, {"/v1.41/images/load": Answer(200, refused, chunked=True)})
    with adapter, pytest.raises(LaunchError, match="refused the archive: invalid tar header"):
        adapter.images.load_stream(_chunks(), len(ARCHIVE))
    engine.close()


def test_save_streams_the_archive_in_chunks(sock_dir: Path) -> None:
    engine, adapter = serve(
        sock_dir,
        {"/v1.41/images/app:1/get": Answer(200, ARCHIVE, content_type="application/x-tar")},
    )
    with adapter:
        chunks = list(adapter.images.save_stream("app:1", chunk_size=65536))
    engine.close()
    assert b"".join(chunks) == ARCHIVE
    assert len(chunks) > 1 and max(map(len, chunks)) <= 65536


def test_engine_errors_map_to_launch_errors(sock_dir: Path) -> None:
    no_image = Answer(404, b'{"message":"No such image: ghost:1"}')
    engine, adapter = serve(
        sock_dir,
        {
            "/v1.41/images/ghost:1": no_image,
            "/v1.41/images/app:1/tag": Answer(500, b'{"message":"disk full"}'),
            "/v1.41/images/app:1/json": Answer(
                200,
                json.dumps(
                    {
                        "Id": "sha256:ab",
                        "RepoTags": ["app:1", "<none>:<none>"],
                        "Size": 7,
                        "Config": {"Labels": {"k": "v"}},
                        "RootFS": {"Layers": ["sha256:l1", "sha256:l2"]},
                        "Os": "linux",
                        "Architecture": "arm64",
                        "Variant": "v8",
                    }
                ).encode(),
            ),
        },
    )
    with adapter:
        assert adapter.images.details("ghost:1") is None
        assert adapter.images.platform("ghost:1") is None
        assert adapter.images.remove("ghost:1") is False
        with pytest.raises(LaunchError, match=r"^image ghost:1 not found$"):
            adapter.images.history("ghost:1")
        with pytest.raises(LaunchError, match=r"^image ghost:1 not found$"):
            list(adapter.images.save_stream("ghost:1"))
        with pytest.raises(LaunchError, match=r"tag image app:1 as app:2: .*500: disk full"):
            adapter.images.tag("app:1", "app:2")
        details = adapter.images.details("app:1")
        platform = adapter.images.platform("app:1")
    engine.close()
    assert details is not None and details.tags == ("app:1",)
    assert details.diff_ids == ("sha256:l1", "sha256:l2") and dict(details.labels) == {"k": "v"}
    assert platform is not None and (platform.architecture, platform.variant) == ("arm64", "v8")


def test_no_engine_is_cannot_reach_naming_the_endpoint(sock_dir: Path) -> None:
    dead = sock_dir / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(dead))
    s.close()  # a socket file left by a crashed engine
    with DockerAdapter.from_env(f"unix://{dead}") as adapter:
        for call in (
            adapter.images.ids,
            lambda: adapter.images.details("app:1"),
            lambda: adapter.images.load_stream(_chunks(), len(ARCHIVE)),
        ):
            with pytest.raises(
                LaunchError, match=rf"cannot reach the container engine at unix://{dead}: .*refused"
            ):
                call()


@pytest.mark.parametrize("sized", [True, False])
def test_an_engine_hanging_up_mid_upload_is_a_launch_error(sock_dir: Path, sized: bool) -> None:
    big = ARCHIVE * 64  # far more than the socket buffers hold
    refused = Answer(500, b'{"message":"archive refused"}', early=True)
    engine, adapter = serve(sock_dir, {"/v1.41/images/load": refused})
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    with adapter, pytest.raises(LaunchError, match="load image"):
        adapter.images.load_stream(chunks, len(big) if sized else None)
    engine.close()
