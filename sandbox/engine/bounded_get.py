"""Read-only GETs on one keep-alive engine connection within a deadline; raises, maps nothing.

The probe's path: `sandbox probe` must answer within its bound and not import the launch
client, so it asks /version and /info over one socket with what is left of its deadline.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any, BinaryIO

from sandbox.engine import http
from sandbox.engine.endpoint import Endpoint
from sandbox.host.bounded_io import Deadline
from sandbox.host.documents import load_json


class BadAnswerError(Exception):
    """The engine answered, but not with a JSON object under HTTP 200."""


def connect(endpoint: Endpoint, deadline: Deadline) -> socket.socket:
    """A connected socket to `endpoint`; OSError (timeouts included) as the kernel says it."""
    if endpoint.unix_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(deadline.left())
        try:
            sock.connect(endpoint.unix_path)
        except BaseException:
            sock.close()
            raise
        return sock
    assert endpoint.tcp_host is not None and endpoint.tcp_port is not None
    return socket.create_connection((endpoint.tcp_host, endpoint.tcp_port), deadline.left())


def get_json(
    sock: socket.socket, reader: BinaryIO, path: str, deadline: Deadline
) -> Mapping[str, Any]:
    """GET `path` on the open connection and decode its JSON object."""
    sock.settimeout(deadline.left())
    http.send_request(sock, "GET", path, None, {"Accept": "application/json"})
    response = http.read_response(reader, "GET")
    if response.status != 200:
        raise BadAnswerError(f"GET {path} answered HTTP {response.status} {response.reason}")

    def fail(_at: str, problem: str) -> BadAnswerError:
        return BadAnswerError(f"GET {path} did not answer JSON: {problem}")

    value = load_json(response.body, fail, max_bytes=http.MAX_BODY, duplicates=True)
    if not isinstance(value, dict):
        raise BadAnswerError(f"GET {path} did not answer a JSON object")
    return value
