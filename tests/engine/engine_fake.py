"""A fake container engine on a unix socket for the engine client's tests: one exchange each."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.engine.adapter import DockerAdapter


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
        # Said, as done: one exchange per connection. Unsaid, docker-py's pool may reuse the
        # connection before the close arrives and get a reset (seen 1 run in 15 under load).
        head = (
            f"HTTP/1.1 {answer.status} X\r\nContent-Type: {answer.content_type}\r\n"
            "Connection: close\r\n"
        )
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


def serve(sock_dir: Path, answers: dict[str, Answer]) -> tuple[FakeEngine, DockerAdapter]:
    """A started fake engine in `sock_dir` and an adapter pointed at it."""
    engine = FakeEngine(sock_dir / "e.sock", answers)
    engine.start()
    return engine, DockerAdapter.from_env(f"unix://{engine.path}")
