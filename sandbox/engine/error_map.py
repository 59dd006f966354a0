"""The one mapping of engine and transport failures onto the error tree; talks to nothing.

An engine that is missing or not listening is an EngineUnavailableError (the host is not ready);
everything the engine answered or broke off mid-way is a LaunchError.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sandbox.errors import EngineUnavailableError, LaunchError

if TYPE_CHECKING:
    from docker.errors import APIError


def engine_error(what: str, status: int, body: bytes) -> LaunchError:
    """An answer other than the expected one, with the engine's own message."""
    try:
        message = str(json.loads(body).get("message") or body.decode(errors="replace"))
    except (ValueError, AttributeError):
        message = body.decode(errors="replace").strip()
    return LaunchError(f"{what}: the engine answered {status}: {message.strip()}")


def no_endpoint(reason: str) -> EngineUnavailableError:
    """Endpoint resolution found no engine to talk to (nothing configured, a refused scheme)."""
    return EngineUnavailableError(f"cannot connect to the container engine: {reason}")


def unreachable(where: str, cause: object, what: str = "") -> EngineUnavailableError:
    """Nothing accepts connections at the endpoint (no socket, connection refused)."""
    prefix = f"{what}: " if what else ""
    return EngineUnavailableError(f"{prefix}cannot reach the container engine at {where}: {cause}")


def connection_failed(what: str, exc: OSError) -> LaunchError:
    """The connection was made but broke during the exchange."""
    return LaunchError(f"{what}: engine connection failed: {exc}")


def _explain(exc: APIError) -> str:
    return str(exc.explanation or exc).strip()


def _os_cause(exc: BaseException) -> str:
    """The socket error under requests' and urllib3's wrappers ("[Errno 111] Connection
    refused"), or the whole text when there is none."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return str(e)
        links = (*e.args, getattr(e, "reason", None), e.__cause__, e.__context__)
        todo.extend(x for x in links if isinstance(x, BaseException))
    return str(exc)


@contextmanager
def docker_errors(what: str, url: str, image: str | None = None) -> Iterator[None]:
    """docker-py's and requests' errors as the raw client's; others (a caller's) pass through.

    `image` set: a 404 means that image is absent ("image X not found").
    """
    import docker.errors
    import requests.exceptions

    try:
        yield
    except docker.errors.NotFound as exc:  # ImageNotFound included
        if image is not None:
            raise LaunchError(f"image {image} not found") from exc
        raise LaunchError(f"{what}: the engine answered 404: {_explain(exc)}") from exc
    except docker.errors.APIError as exc:
        raise LaunchError(
            f"{what}: the engine answered {exc.status_code}: {_explain(exc)}"
        ) from exc
    except requests.exceptions.ConnectionError as exc:
        raise unreachable(url, _os_cause(exc), what) from exc
    except requests.exceptions.RequestException as exc:
        raise connection_failed(what, exc) from exc
    except docker.errors.DockerException as exc:
        raise LaunchError(f"{what}: {exc}") from exc
