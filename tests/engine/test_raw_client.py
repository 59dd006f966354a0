"""The raw hot-path client against a fake engine: create posts the runtime's body as given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_fake import Answer, serve

from sandbox.errors import LaunchError

BODY = {"Image": "example/app:1", "Cmd": ["app"], "HostConfig": {"NetworkMode": "none"}}


def test_create_posts_the_body_and_the_name(sock_dir: Path) -> None:
    engine, adapter = serve(sock_dir, {"/containers/create": Answer(201, b'{"Id":"abc"}')})
    assert adapter.create(BODY, name="sandbox-1") == "abc"
    engine.close()
    (req,) = engine.seen
    assert (req.method, req.path) == ("POST", "/containers/create?name=sandbox-1")
    assert json.loads(req.body) == BODY


def test_create_without_a_name_and_of_a_missing_image(sock_dir: Path) -> None:
    engine, adapter = serve(sock_dir, {"/containers/create": Answer(404, b"{}")})
    with pytest.raises(LaunchError, match=r"^image example/app:1 not found \(the engine has no"):
        adapter.create(BODY)
    engine.close()
    assert engine.seen[0].path == "/containers/create"


def test_labels_and_containers_come_typed(sock_dir: Path) -> None:
    listed = [{"Id": "c1", "Labels": {"k": "v"}, "State": "running"}]
    engine, adapter = serve(
        sock_dir,
        {
            "/images/app%3A1/json": Answer(200, b'{"Config":{"Labels":{"a":"1"}}}'),
            "/containers/json": Answer(200, json.dumps(listed).encode()),
        },
    )
    assert adapter.image_labels("app:1") == {"a": "1"}
    (c,) = adapter.containers_with_label("k", "v")
    engine.close()
    assert (c.id, dict(c.labels), c.state, c.running, c.pid) == (
        "c1",
        {"k": "v"},
        "running",
        True,
        0,
    )


def test_image_config_is_one_inspect_with_labels_volumes_and_workdir(sock_dir: Path) -> None:
    config = {
        "Labels": {"a": "1"},
        "Volumes": {"/var/lib/x": {}, "/data": {}},
        "WorkingDir": "/opt/app",
        "Entrypoint": ["/bin/sh"],
    }
    answer = json.dumps({"Id": "sha256:abc", "Config": config}).encode()
    engine, adapter = serve(sock_dir, {"/images/app%3A1/json": Answer(200, answer)})
    got = adapter.image_config("app:1")
    engine.close()
    assert len(engine.seen) == 1
    assert (got.id, dict(got.labels), got.volumes, got.working_dir) == (
        "sha256:abc",
        {"a": "1"},
        ("/data", "/var/lib/x"),
        "/opt/app",
    )


def test_image_config_of_a_bare_image_and_a_bad_answer(sock_dir: Path) -> None:
    engine, adapter = serve(
        sock_dir,
        {
            "/images/bare/json": Answer(200, b'{"Id":"sha256:b","Config":{"Volumes":null}}'),
            "/images/odd/json": Answer(200, b'{"Id":"sha256:o","Config":{"Volumes":["/d"]}}'),
        },
    )
    bare = adapter.image_config("bare")
    with pytest.raises(LaunchError, match=r"image odd: the engine answered Config.Volumes"):
        adapter.image_config("odd")
    engine.close()
    assert (bare.volumes, dict(bare.labels), bare.working_dir) == ((), {}, "")
