"""Test-side helpers that run throwaway hardened containers and look inside them; no assertions."""

from __future__ import annotations

import errno
import subprocess
from typing import Any

import docker

APP_UID = 1000


def hardened(uid: int = APP_UID, **extra: Any) -> dict[str, Any]:
    """`containers.run` keyword arguments with the hardening every launch gets, plus `extra`.

    The same always-on set the runtime applies (uid, no capabilities, no-new-privileges, no
    network, read-only root), so a test that passes here passes under a real launch.
    """
    return {
        "user": f"{uid}:{uid}",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "network_mode": "none",
        "read_only": True,
        **extra,
    }


def run_to_end(
    client: docker.DockerClient, image: str, cmd: list[str], timeout: float = 60, **kw: Any
) -> tuple[int, str]:
    """Run `cmd` in a fresh container until it exits: (exit status, logs); always removed."""
    container = client.containers.run(image, cmd, detach=True, **kw)
    try:
        status = container.wait(timeout=timeout)
        return int(status["StatusCode"]), container.logs().decode()
    finally:
        container.remove(force=True)


def open_errno_in(cid: str, node: str, user: str | None = None) -> int:
    """errno of a write-only open of `node` inside container `cid` (0 = it opened).

    `user` ("uid:gid") runs the open as that user; None as the container's own user.
    """
    script = 'test -e "$1" || { echo ENOENT; exit; }; (: > "$1") 2>&1 && echo OK'
    as_user = ["-u", user] if user is not None else []
    done = subprocess.run(
        ["docker", "exec", *as_user, cid, "sh", "-c", script, "sh", node],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,  # a failed open ends that sh with 2; its message says why
    )
    out = done.stdout.strip()
    if out == "OK":
        return 0
    if out == "ENOENT":
        return errno.ENOENT
    if out.endswith("Operation not permitted"):
        return errno.EPERM
    raise AssertionError(f"unexpected open failure of {node}: {out}")


def plan_as_labelled(image: str, engine_url: str | None) -> Any:
    """The runtime's plan of a local image as the app its labels name, resolved here as an
    embedding launcher that vouches for the image would (`sandbox.plan()` runs an image no
    install vouches for as an unverified copy; these tests are about the runtime, not identity).
    """
    from sandbox.engine.adapter import DockerAdapter
    from sandbox.policy.manifest import manifest_from_labels
    from sandbox.runtime.prepare import ResolvedImage, prepare

    with DockerAdapter.from_env(engine_url) as adapter:
        config = adapter.image_config(image)
        url = adapter.url
    manifest = manifest_from_labels(dict(config.labels))
    return prepare(ResolvedImage(config.id, manifest, url, engine_url, config))
