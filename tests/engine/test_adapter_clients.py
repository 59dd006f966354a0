"""DockerAdapter's two clients: who imports docker-py, and image management over a fake socket."""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sandbox.engine.adapter import DockerAdapter
from sandbox.errors import BundleError, LaunchError

# --- which commands import docker-py --------------------------------------------------------

# `'docker' in sys.modules` exactly: our own probe module is `sandbox.probes.docker`.
_AFTER_MAIN = """
import sys
from sandbox.cli import main
code = main(sys.argv[1:])
print(repr(('docker' in sys.modules, code)))
"""


def _main_in_fresh_python(*argv: str) -> tuple[bool, int, str]:
    done = subprocess.run(
        [sys.executable, "-c", _AFTER_MAIN, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    imported, code = ast.literal_eval(lines[-1])
    return bool(imported), int(code), done.stderr


def test_sandbox_run_never_imports_docker_py(tmp_path: Path) -> None:
    dead = f"unix://{tmp_path}/no-engine.sock"
    imported, code, err = _main_in_fresh_python("run", "--docker-host", dead, "example/app:1")
    # it got as far as asking the engine (image resolution), through the raw client only
    assert code != 0 and f"{tmp_path}/no-engine.sock" in err, err
    assert not imported


def test_run_path_modules_do_not_import_docker_py() -> None:
    code = (
        "import sys, sandbox.cli, sandbox.cli.run_cmd, sandbox.cli.instances_cmd, "
        "sandbox.runtime.session, sandbox.runtime.gc, sandbox.engine.adapter, "
        "sandbox.probes.docker\n"
        "sandbox.cli.build_parser(['run', 'x'])\n"
        "print('docker' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False", done.stderr


def test_sandbox_export_goes_through_docker_py(tmp_path: Path) -> None:
    dead = f"unix://{tmp_path}/no-engine.sock"
    out = tmp_path / "app.sbx"
    imported, code, err = _main_in_fresh_python(
        "export", "--docker-host", dead, "-o", str(out), "example/app:1"
    )
    assert code != 0 and "cannot reach the container engine" in err, err
    assert f"{tmp_path}/no-engine.sock" in err
    assert imported
    assert not out.exists()


# --- image management against a fake engine socket ------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    complete: bool = True  # the whole announced body arrived


@dataclass
class Answer:
    status: int
    body: bytes
    chunked: bool = False
    content_type: str = "application/json"
    early: bool = False  # answer and hang up before reading the request body


@dataclass
class FakeEngine:
    """One HTTP/1.1 exchange per connection on a unix socket; answers by path prefix."""

    path: Path
    answers: dict[str, Answer]
    seen: list[Seen] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        self.server.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self._exchange(conn)
                except OSError:
                    pass
                finally:
                    self.done.set()

    def _exchange(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        request_line = reader.readline().decode()
        if not request_line:
            return
        method, target, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        while (line := reader.readline().decode()) not in ("\r\n", ""):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        seen = Seen(method, target, headers)
        self.seen.append(seen)
        path = target.split("?", 1)[0]
        answer = next(
            (a for prefix, a in self.answers.items() if path.startswith(prefix)),
            Answer(404, b'{"message":"page not found"}'),
        )
        if not answer.early:
            seen.body, seen.complete = _read_body(reader, headers)
            if not seen.complete:
                return
        head = f"HTTP/1.1 {answer.status} X\r\nContent-Type: {answer.content_type}\r\n"
        if answer.chunked:
            body = b"".join(
                f"{len(line):x}\r\n".encode() + line + b"\r\n"
                for line in answer.body.splitlines(keepends=True)
            )
            conn.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + body + b"0\r\n\r\n")
        else:
            conn.sendall(f"{head}Content-Length: {len(answer.body)}\r\n\r\n".encode() + answer.body)

    def close(self) -> None:
        self.server.close()


def _read_body(reader: object, headers: dict[str, str]) -> tuple[bytes, bool]:
    from io import BufferedReader

    assert isinstance(reader, BufferedReader)
    if "content-length" in headers:
        want = int(headers["content-length"])
        body = reader.read(want)
        return body, len(body) == want
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size_line = reader.readline()
            if not size_line:
                return body, False
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                reader.readline()
                return body, True
            body += reader.read(size)
            reader.readline()
    return b"", True


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # short: tmp_path can pass the AF_UNIX path limit
    with tempfile.TemporaryDirectory(prefix="sbx-", dir="/tmp") as d:
        yield Path(d)


def _engine(sock_dir: Path, answers: dict[str, Answer]) -> tuple[FakeEngine, DockerAdapter]:
    engine = FakeEngine(sock_dir / "e.sock", answers)
    engine.start()
    return engine, DockerAdapter.from_env(f"unix://{engine.path}")


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
    engine, adapter = _engine(sock_dir, {"/v1.41/images/load": Answer(200, LOADED, chunked=True)})
    with adapter:
        loaded = adapter.image_load_stream(_chunks(), len(ARCHIVE))
    engine.close()
    assert loaded == ("app:1", "sha256:ab")
    (req,) = engine.seen
    assert req.method == "POST" and "quiet=" in req.path
    assert req.headers["content-length"] == str(len(ARCHIVE))
    assert "transfer-encoding" not in req.headers
    assert req.body == ARCHIVE


def test_load_without_a_size_is_chunked(sock_dir: Path) -> None:
    engine, adapter = _engine(sock_dir, {"/v1.41/images/load": Answer(200, LOADED, chunked=True)})
    with adapter:
        assert adapter.image_load_stream(_chunks()) == ("app:1", "sha256:ab")
    engine.close()
    (req,) = engine.seen
    assert req.headers.get("transfer-encoding") == "chunked" and req.body == ARCHIVE


@pytest.mark.parametrize("sized", [True, False])
def test_a_failing_chunk_source_aborts_the_upload_with_its_own_error(
    sock_dir: Path, sized: bool
) -> None:
    engine, adapter = _engine(sock_dir, {"/v1.41/images/load": Answer(200, LOADED, chunked=True)})
    with adapter, pytest.raises(BundleError, match="digest does not match"):
        adapter.image_load_stream(_chunks(fail_after=3), len(ARCHIVE) if sized else None)
    assert engine.done.wait(5)
    engine.close()
    (req,) = engine.seen
    assert not req.complete  # the engine saw a truncated archive, so loads nothing
    assert len(req.body) < len(ARCHIVE)


def test_an_error_in_the_load_stream_is_a_launch_error(sock_dir: Path) -> None:
    refused = b'{"errorDetail":{"message":"invalid tar header"},"error":"invalid tar header"}\n'
    engine, adapter = _engine(sock_dir, {"/v1.41/images/load": Answer(200, refused, chunked=True)})
    with adapter, pytest.raises(LaunchError, match="refused the archive: invalid tar header"):
        adapter.image_load_stream(_chunks(), len(ARCHIVE))
    engine.close()


def test_save_streams_the_archive_in_chunks(sock_dir: Path) -> None:
    engine, adapter = _engine(
        sock_dir,
        {"/v1.41/images/app:1/get": Answer(200, ARCHIVE, content_type="application/x-tar")},
    )
    with adapter:
        chunks = list(adapter.image_save_stream("app:1", chunk_size=65536))
    engine.close()
    assert b"".join(chunks) == ARCHIVE
    assert len(chunks) > 1 and max(map(len, chunks)) <= 65536


def test_engine_errors_map_to_launch_errors(sock_dir: Path) -> None:
    no_image = Answer(404, b'{"message":"No such image: ghost:1"}')
    engine, adapter = _engine(
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
        assert adapter.image_details("ghost:1") is None
        assert adapter.image_platform("ghost:1") is None
        assert adapter.image_remove("ghost:1") is False
        with pytest.raises(LaunchError, match=r"^image ghost:1 not found$"):
            adapter.image_history("ghost:1")
        with pytest.raises(LaunchError, match=r"^image ghost:1 not found$"):
            list(adapter.image_save_stream("ghost:1"))
        with pytest.raises(LaunchError, match=r"tag image app:1 as app:2: .*500: disk full"):
            adapter.image_tag("app:1", "app:2")
        details = adapter.image_details("app:1")
        platform = adapter.image_platform("app:1")
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
            adapter.image_ids,
            lambda: adapter.image_details("app:1"),
            lambda: adapter.image_load_stream(_chunks(), len(ARCHIVE)),
        ):
            with pytest.raises(
                LaunchError, match=rf"cannot reach the container engine at unix://{dead}: .*refused"
            ):
                call()


@pytest.mark.parametrize("sized", [True, False])
def test_an_engine_hanging_up_mid_upload_is_a_launch_error(sock_dir: Path, sized: bool) -> None:
    big = ARCHIVE * 64  # far more than the socket buffers hold
    refused = Answer(500, b'{"message":"archive refused"}', early=True)
    engine, adapter = _engine(sock_dir, {"/v1.41/images/load": refused})
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    with adapter, pytest.raises(LaunchError, match="load image"):
        adapter.image_load_stream(chunks, len(big) if sized else None)
    engine.close()
