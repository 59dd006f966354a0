"""Publisher signatures on a real engine: a signed install pins its key; a file signed by another
key, an unsigned one, or one whose statement was edited changes nothing (image not loaded,
record unchanged); a rotation signed by the old key re-pins; a site policy can refuse unsigned
files; rebase keeps the pin; and the refusal holds on Podman."""

from __future__ import annotations

import json
from pathlib import Path

from integration.test_updates import (  # the demo app builds and CLI helpers, shared
    APP,
    diff_ids,
    docker,
    env,
    images,
    inspect,
    podman_with_base,
    record,
    sandbox,
    versions,
)

__all__ = ["env", "versions"]  # fixtures, imported so pytest finds them here


def _record_bytes(env: dict[str, str]) -> bytes:
    return (Path(env["XDG_DATA_HOME"]) / "sandbox" / "installed" / f"{APP}.json").read_bytes()


def _keys(env: dict[str, str], tmp: Path, *names: str) -> dict[str, tuple[Path, str]]:
    out = {}
    for name in names:
        path = tmp / f"{name}.key"
        done = sandbox(env, "keygen", "-o", str(path))
        assert done.returncode == 0, done.stderr
        assert path.stat().st_mode & 0o777 == 0o600
        out[name] = (path, done.stdout.strip().rsplit(" ", 1)[-1])
    return out


def _export(env: dict[str, str], image: str, out: Path, *args: str) -> Path:
    done = sandbox(env, "export", image, "-o", str(out), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _drop_v2(versions: dict[str, str]) -> str:
    """Take v2 out of the engine (its files are written): a refused file must not bring it."""
    image_v2 = str(inspect(versions["v2"])["Id"])
    docker("rmi", versions["v2"])
    assert image_v2 not in images()
    return image_v2


def test_other_key_unsigned_and_tampered_files_change_nothing(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    keys = _keys(env, tmp_path, "publisher", "impostor")
    (k1, fp1), (k2, fp2) = keys["publisher"], keys["impostor"]
    v1 = _export(env, versions["v1"], tmp_path / "v1.sbx", "--sign", str(k1))
    other = _export(env, versions["v2"], tmp_path / "v2-other.sbx", "--sign", str(k2))
    unsigned = _export(env, versions["v2"], tmp_path / "v2-unsigned.sbx")
    delta = _export(
        env, versions["v2"], tmp_path / "v2-delta.sbx", "--delta-from", versions["v1"],
        "--sign", str(k2),
    )  # fmt: skip
    tampered = _export(env, versions["v2"], tmp_path / "v2-tampered.sbx", "--sign", str(k1))
    _edit_statement(tampered, b'"version": "2.0.0"', b'"version": "2.0.1"')
    image_v2 = _drop_v2(versions)
    try:
        out = sandbox(env, "install", "--yes", str(v1))
        assert out.returncode == 0, out.stdout + out.stderr
        assert fp1 in out.stdout and "Publisher:" in out.stdout
        rec = record(env)
        assert rec["publisher-key"] == fp1 and rec["signed-by"] == fp1
        before = _record_bytes(env)
        for path, carried in (
            (other, f"signed by {fp2}"),
            (unsigned, "unsigned"),
            (delta, f"signed by {fp2}"),
        ):
            for args in (("update", APP, str(path)), ("install", "--yes", str(path))):
                out = sandbox(env, *args)
                assert out.returncode == 2, (args, out.stdout, out.stderr)
                assert APP in out.stderr and fp1 in out.stderr and carried in out.stderr
                assert "Traceback" not in out.stderr
                assert image_v2 not in images()
                assert _record_bytes(env) == before
        out = sandbox(env, "update", APP, str(tampered))
        assert out.returncode == 2 and "statement.version" in out.stderr, out.stderr
        assert image_v2 not in images() and _record_bytes(env) == before
    finally:
        sandbox(env, "uninstall", APP)


def _edit_statement(path: Path, old: bytes, new: bytes) -> None:
    """Change the signature member's statement in place (same length: the tar stays valid)."""
    with path.open("r+b") as f:
        head = f.read(1 << 20)
        start = head.index(b'"format": "org.sandbox-apps.signature"')
        member_start = head.rindex(b"{", 0, start)
        at = head.index(old, member_start)
        f.seek(at)
        f.write(new)


def test_rotation_signed_by_the_old_key_re_pins_and_rollback_follows(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    keys = _keys(env, tmp_path, "old", "new")
    (k1, fp1), (k2, fp2) = keys["old"], keys["new"]
    v1 = _export(env, versions["v1"], tmp_path / "v1.sbx", "--sign", str(k1))
    delta = _export(
        env, versions["v2"], tmp_path / "v2-delta.sbx", "--delta-from", versions["v1"],
        "--sign", str(k2), "--rotate-from", str(k1),
    )  # fmt: skip
    image_v2 = _drop_v2(versions)
    try:
        assert sandbox(env, "install", "--yes", str(v1)).returncode == 0
        out = sandbox(env, "update", APP, str(delta))
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"rotated from the pinned key {fp1}" in out.stdout
        rec = record(env)
        assert rec["image-id"] == image_v2
        assert rec["publisher-key"] == fp2 and rec["publisher-lineage"] == [fp1, fp2]
        # v1 was signed by a key the pin rotated from: it may come back, the pin stays new
        assert sandbox(env, "rollback", APP).returncode == 0
        rec = record(env)
        assert rec["version"] == "1.0.0" and rec["publisher-key"] == fp2
        # a file signed by the old key alone no longer updates the app
        old_only = _export(env, image_v2, tmp_path / "v2-old.sbx", "--sign", str(k1))
        out = sandbox(env, "update", APP, str(old_only))
        assert out.returncode == 2 and fp2 in out.stderr, out.stderr
    finally:
        sandbox(env, "uninstall", APP)
        docker("rmi", image_v2, check=False)


def test_unsigned_install_is_loud_then_a_signed_update_pins(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    (k1, fp1) = _keys(env, tmp_path, "publisher")["publisher"]
    v1 = _export(env, versions["v1"], tmp_path / "v1.sbx")
    v2 = _export(env, versions["v2"], tmp_path / "v2.sbx", "--sign", str(k1))
    try:
        out = sandbox(env, "install", "--yes", str(v1))
        assert out.returncode == 0 and "UNSIGNED" in out.stdout, out.stdout + out.stderr
        assert record(env)["publisher-key"] is None
        out = sandbox(env, "update", APP, str(v2))
        assert out.returncode == 0, out.stdout + out.stderr
        assert record(env)["publisher-key"] == fp1
        # now pinned: the unsigned v1 may not come back as a rollback
        out = sandbox(env, "rollback", APP)
        assert out.returncode == 2 and fp1 in out.stderr and "unsigned" in out.stderr
        assert record(env)["version"] == "2.0.0"
    finally:
        sandbox(env, "uninstall", APP)


def test_site_policy_requiring_signatures_refuses_unsigned_files(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "50-signed.toml").write_text("version = 1\n[install]\nrequire-signature = true\n")
    (k1, fp1) = _keys(env, tmp_path, "publisher")["publisher"]
    unsigned = _export(env, versions["v1"], tmp_path / "v1.sbx")
    signed = _export(env, versions["v1"], tmp_path / "v1-signed.sbx", "--sign", str(k1))
    record_path = Path(env["XDG_DATA_HOME"]) / "sandbox" / "installed" / f"{APP}.json"
    try:
        out = sandbox(env, "install", "--yes", "--site-policy", str(site), str(unsigned))
        assert out.returncode == 2 and "site policy requires signed" in out.stderr, out.stderr
        assert str(unsigned) in out.stderr and not record_path.exists()
        out = sandbox(env, "install", "--yes", "--site-policy", str(site), str(signed))
        assert out.returncode == 0, out.stdout + out.stderr
        assert record(env)["publisher-key"] == fp1
    finally:
        sandbox(env, "uninstall", APP)


def test_rebase_keeps_the_pin_and_says_the_user_did_it(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    (k1, fp1) = _keys(env, tmp_path, "publisher")["publisher"]
    v1 = _export(env, versions["v1"], tmp_path / "v1.sbx", "--sign", str(k1))
    try:
        assert sandbox(env, "install", "--yes", str(v1)).returncode == 0
        out = sandbox(env, "rebase", APP, "--onto", versions["patched"])
        assert out.returncode == 0, out.stdout + out.stderr
        rec = record(env)
        assert rec["app-id"] == APP and rec["publisher-key"] == fp1
        assert rec["rebased-by-user"] is True and rec["signed-by"] is None
        assert rec["previous"]["signed-by"] == fp1  # type: ignore[index]
        assert sandbox(env, "rollback", APP).returncode == 0  # back to the signed v1
        assert sandbox(env, "rollback", APP).returncode == 0  # and to the user's own rebase
        assert record(env)["rebased-by-user"] is True
    finally:
        sandbox(env, "uninstall", APP)


def test_other_key_refused_on_podman(
    versions: dict[str, str],
    env: dict[str, str],
    tmp_path: Path,
    base_image: str,
    podman_client_url: str,
) -> None:
    """The pin is the engine's business not at all: on Podman a thin v1 signed by the
    publisher installs and pins, a thin v2 signed by another key loads nothing there."""
    keys = _keys(env, tmp_path, "publisher", "impostor")
    (k1, fp1), (k2, fp2) = keys["publisher"], keys["impostor"]
    thin = ("--thin", "--base", base_image)
    v1 = _export(env, versions["v1"], tmp_path / "v1.sbx", *thin, "--sign", str(k1))
    v2 = _export(env, versions["v2"], tmp_path / "v2.sbx", *thin, "--sign", str(k2))
    image_v1 = str(inspect(versions["v1"])["Id"])
    image_v2 = str(inspect(versions["v2"])["Id"])
    pod_env = dict(env, DOCKER_HOST=podman_client_url)
    with podman_with_base(env, podman_client_url, base_image, (image_v1, image_v2)) as podman:
        out = sandbox(pod_env, "install", "--yes", str(v1))
        assert out.returncode == 0, out.stdout + out.stderr
        assert record(pod_env)["publisher-key"] == fp1
        before = _record_bytes(pod_env)
        out = sandbox(pod_env, "update", APP, str(v2))
        assert out.returncode == 2 and fp1 in out.stderr and fp2 in out.stderr, out.stderr
        assert podman.images.details(image_v2) is None
        assert _record_bytes(pod_env) == before
        loaded = podman.images.details(image_v1)
        assert loaded is not None and loaded.diff_ids == tuple(diff_ids(versions["v1"]))


def test_signed_files_of_every_kind_carry_the_same_statement(
    versions: dict[str, str], env: dict[str, str], tmp_path: Path, base_image: str
) -> None:
    """Full, thin and delta files of one image are signed over the same statement."""
    import tarfile

    (k1, _fp) = _keys(env, tmp_path, "publisher")["publisher"]
    files = [
        _export(env, versions["v2"], tmp_path / "full.sbx", "--sign", str(k1)),
        _export(env, versions["v2"], tmp_path / "thin.sbx", "--thin", "--base", base_image,
                "--sign", str(k1)),
        _export(env, versions["v2"], tmp_path / "delta.sbx", "--delta-from", versions["v1"],
                "--sign", str(k1)),
    ]  # fmt: skip
    statements = []
    for path in files:
        with tarfile.open(path, "r|") as tar:
            names = []
            for member in tar:
                names.append(member.name)
                if member.name == "sandbox-signature.json":
                    f = tar.extractfile(member)
                    assert f is not None
                    statements.append(json.loads(f.read())["statement"])
                if len(names) == 2:
                    break
        assert names == ["sandbox-bundle.json", "sandbox-signature.json"]
    assert statements[0] == statements[1] == statements[2]
    assert statements[0]["image-id"] == inspect(versions["v2"])["Id"]
    assert statements[0]["diff-ids"] == diff_ids(versions["v2"])
