"""Publisher signatures: the statement's encoding, verification against the file, rotation
chains, key files, and the pin rules an install record follows."""

from __future__ import annotations

import dataclasses
import json
import os
import tarfile
from pathlib import Path

import pytest
from bundle_factory import Knobs, build_bundle, tiny_manifest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sandbox.distribution.bundle_format import BundleHeader
from sandbox.distribution.bundle_reader import VerifiedBundle, verify_bundle
from sandbox.distribution.installed import InstalledApp, dump_record, parse_record
from sandbox.distribution.publishers import (
    NO_PIN,
    Pin,
    check_rollback,
    first_pin,
    next_pin,
    review_line,
)
from sandbox.distribution.signing import (
    SIGNATURE_NAME,
    Signature,
    Statement,
    dump_signature,
    fingerprint,
    generate_key,
    load_key,
    parse_signature,
    rotate,
    sign,
    statement_for,
)
from sandbox.errors import BundleError, PolicyError
from sandbox.policy.layer_files import parse_site_policy


def _pub(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return fingerprint(raw)


def _member(data: bytes, name: str = SIGNATURE_NAME) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _header(tmp_path: Path) -> BundleHeader:
    path = tmp_path / "unsigned.sbx"
    path.write_bytes(build_bundle(tiny_manifest()))
    return verify_bundle(path).header


def _signed(tmp_path: Path, signature: Signature, name: str = "signed.sbx") -> Path:
    knobs = Knobs(extra_members=[_member(dump_signature(signature))])
    path = tmp_path / name
    path.write_bytes(build_bundle(tiny_manifest(), knobs=knobs))
    return path


def _verified(tmp_path: Path, signature: Signature) -> VerifiedBundle:
    return verify_bundle(_signed(tmp_path, signature))


def test_statement_encoding_is_canonical_and_binds_every_field(tmp_path: Path) -> None:
    st = statement_for(_header(tmp_path))
    text = st.encode()
    doc = json.loads(text)
    assert list(doc) == sorted(doc) and b" " not in text and b"\n" not in text
    assert doc == {
        "app-id": "org.sandbox.TinyTest",
        "version": "1.0.0",
        "manifest-sha256": st.manifest_sha256,
        "image-id": st.image_id,
        "diff-ids": list(st.diff_ids),
    }
    assert len(st.manifest_sha256) == 64 and st.image_id.startswith("sha256:")
    # every field changes the signed bytes
    for field, value in (
        ("app_id", "org.other.App"),
        ("version", "1.0.1"),
        ("manifest_sha256", "0" * 64),
        ("image_id", "sha256:" + "0" * 64),
        ("diff_ids", ("sha256:" + "1" * 64,)),
    ):
        assert dataclasses.replace(st, **{field: value}).encode() != text


def test_signed_bundle_verifies_and_names_its_publisher(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    header = _header(tmp_path)
    verified = _verified(tmp_path, sign(statement_for(header), key))
    assert verified.publisher is not None
    assert verified.publisher.fingerprint == _pub(key)
    assert verified.publisher.lineage == (_pub(key),)
    assert verified.header == header
    unsigned = verify_bundle(tmp_path / "unsigned.sbx")
    assert unsigned.publisher is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("app_id", "org.sandbox.Impostor"),
        ("version", "9.9.9"),
        ("manifest_sha256", "0" * 64),
        ("image_id", "sha256:" + "0" * 64),
        ("diff_ids", ("sha256:" + "1" * 64,)),
    ],
)
def test_a_statement_the_file_contradicts_is_refused(
    tmp_path: Path, field: str, value: object
) -> None:
    """Validly signed, but about other content: the field that differs is named."""
    key = Ed25519PrivateKey.generate()
    st = dataclasses.replace(statement_for(_header(tmp_path)), **{field: value})
    with pytest.raises(BundleError) as err:
        _verified(tmp_path, sign(st, key))
    assert err.value.member == SIGNATURE_NAME
    assert f"statement.{field.replace('_', '-')}" in err.value.problem


def test_a_tampered_statement_or_signature_is_refused(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    good = sign(statement_for(_header(tmp_path)), key)
    # v1's signature with its statement rewritten to say all of v2 (so every field matches
    # the v2 file): the signature no longer covers it
    v2 = tmp_path / "v2.sbx"
    v2.write_bytes(build_bundle(tiny_manifest("2.0.0")))
    doc = json.loads(dump_signature(good))
    doc["statement"] = json.loads(statement_for(verify_bundle(v2).header).encode())
    knobs = Knobs(extra_members=[_member(json.dumps(doc).encode())])
    v2.write_bytes(build_bundle(tiny_manifest("2.0.0"), knobs=knobs))
    with pytest.raises(BundleError, match=r"is not .*'s signature of the statement"):
        verify_bundle(v2)
    # ... and a flipped signature byte over the right statement
    bad = dataclasses.replace(good, signature=bytes([good.signature[0] ^ 1]) + good.signature[1:])
    with pytest.raises(BundleError, match="signature of the statement"):
        _verified(tmp_path, bad)
    # another key claiming the signature
    other = Ed25519PrivateKey.generate()
    raw = other.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    with pytest.raises(BundleError, match="signature of the statement"):
        _verified(tmp_path, dataclasses.replace(good, key=raw))


def test_the_signature_member_must_follow_the_header(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    data = dump_signature(sign(statement_for(_header(tmp_path)), key))
    filler = _member(b"x", "filler")
    knobs = Knobs(extra_members=[filler, _member(data)])
    path = tmp_path / "late.sbx"
    path.write_bytes(build_bundle(tiny_manifest(), knobs=knobs))
    with pytest.raises(BundleError, match=r"must come right after sandbox-bundle\.json"):
        verify_bundle(path)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"{", "invalid JSON"),
        (b"{\xff}", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply|must be an object"),
        (b'{"format": 1}', "lacks"),
    ],
)
def test_malformed_signature_members_are_bundle_errors(data: bytes, problem: str) -> None:
    with pytest.raises(BundleError, match=problem):
        parse_signature(data)


def test_rotation_chain_verifies_and_re_pins(tmp_path: Path) -> None:
    k0, k1, k2 = (Ed25519PrivateKey.generate() for _ in range(3))
    st = statement_for(_header(tmp_path))
    verified = _verified(tmp_path, sign(st, k2, (k0, k1)))
    publisher = verified.publisher
    assert publisher is not None
    assert publisher.lineage == (_pub(k0), _pub(k1), _pub(k2))
    pinned = Pin(_pub(k1), (_pub(k0), _pub(k1)), _pub(k1))
    after = next_pin(st.app_id, pinned, publisher, require_signature=False, source="f")
    assert after == Pin(_pub(k2), (_pub(k0), _pub(k1), _pub(k2)), _pub(k2))


def test_a_broken_rotation_chain_is_refused(tmp_path: Path) -> None:
    k0, k1, mallory = (Ed25519PrivateKey.generate() for _ in range(3))
    st = statement_for(_header(tmp_path))
    good = sign(st, k1, (k0,))
    # a rotation "signed" by someone else than the old key
    forged = dataclasses.replace(rotate(st.app_id, mallory, k1), old=good.rotations[0].old)
    with pytest.raises(BundleError, match=r"rotations\[0\].signature"):
        _verified(tmp_path, dataclasses.replace(good, rotations=(forged,)))
    # a rotation made for another app does not carry over
    elsewhere = rotate("org.other.App", k0, k1)
    with pytest.raises(BundleError, match=r"rotations\[0\].signature"):
        _verified(tmp_path, dataclasses.replace(good, rotations=(elsewhere,)))
    # a chain that does not end at the signing key
    loose = dataclasses.replace(good, rotations=(rotate(st.app_id, k0, mallory),))
    with pytest.raises(BundleError, match=r"rotations\[0\].to"):
        _verified(tmp_path, loose)


def test_keygen_writes_0600_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "publisher.key"
    old = os.umask(0)
    try:
        fp = generate_key(path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    assert fp.startswith("ed25519:") and len(fp) == len("ed25519:") + 64
    assert _pub(load_key(path)) == fp
    before = path.read_bytes()
    with pytest.raises(BundleError, match="exists already"):
        generate_key(path)
    assert path.read_bytes() == before


def test_bad_key_files_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "k"
    generate_key(path)
    path.chmod(0o644)
    with pytest.raises(BundleError, match="open to others") as err:
        load_key(path)
    assert err.value.member == str(path)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not a key")
    garbage.chmod(0o600)
    with pytest.raises(BundleError, match="not an unencrypted PEM") as err:
        load_key(garbage)
    assert err.value.member == str(garbage)
    wrong = tmp_path / "x25519"
    wrong.write_bytes(
        X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    wrong.chmod(0o600)
    with pytest.raises(BundleError, match="not an Ed25519 key"):
        load_key(wrong)
    with pytest.raises(BundleError, match="cannot open"):
        load_key(tmp_path / "missing")


def test_cli_bad_key_file_exits_2_before_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.cli import main

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    bad = tmp_path / "bad.key"
    bad.write_text("nope")
    bad.chmod(0o600)
    code = main(["export", "some/image:1", "-o", str(tmp_path / "out.sbx"), "--sign", str(bad)])
    assert code == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err
    assert not (tmp_path / "out.sbx").exists()
    key = tmp_path / "good.key"
    assert main(["keygen", "-o", str(key)]) == 0
    assert capsys.readouterr().out.strip().endswith(_pub(load_key(key)))
    assert main(["keygen", "-o", str(key)]) == 2


def _publisher(tmp_path: Path, key: Ed25519PrivateKey, *older: Ed25519PrivateKey) -> object:
    return _verified(tmp_path, sign(statement_for(_header(tmp_path)), key, older)).publisher


def test_pin_rules(tmp_path: Path) -> None:
    k, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    signed = _verified(tmp_path, sign(statement_for(_header(tmp_path)), k)).publisher
    by_other = _verified(tmp_path, sign(statement_for(_header(tmp_path)), other)).publisher
    app = "org.sandbox.TinyTest"
    assert first_pin(None, require_signature=False, source="f") == NO_PIN
    with pytest.raises(BundleError, match="site policy requires signed"):
        first_pin(None, require_signature=True, source="f")
    pinned = first_pin(signed, require_signature=False, source="f")
    assert pinned == Pin(_pub(k), (_pub(k),), _pub(k))
    # an unsigned install: unsigned files still update it; the first signed one pins
    assert next_pin(app, NO_PIN, None, require_signature=False, source="f") == NO_PIN
    assert next_pin(app, NO_PIN, signed, require_signature=False, source="f") == pinned
    assert next_pin(app, pinned, signed, require_signature=False, source="f") == pinned
    for publisher, carried in ((None, "unsigned"), (by_other, f"signed by {_pub(other)}")):
        with pytest.raises(BundleError) as err:
            next_pin(app, pinned, publisher, require_signature=False, source="v2.sbx")
        text = str(err.value)
        assert app in text and _pub(k) in text and carried in text and "v2.sbx" in text
    assert "UNSIGNED" in review_line("Studio", None)
    assert _pub(k) in review_line("Studio", signed) and "Studio" in review_line("Studio", signed)


def test_rollback_rules() -> None:
    pinned = Pin("ed25519:b", ("ed25519:a", "ed25519:b"), "ed25519:b")
    check_rollback("x.Y", pinned, Pin("ed25519:a", (), "ed25519:a"), rebased_by_user=False)
    check_rollback("x.Y", pinned, Pin("ed25519:b", (), None), rebased_by_user=True)
    check_rollback("x.Y", NO_PIN, NO_PIN, rebased_by_user=False)
    for target in (NO_PIN, Pin("ed25519:c", (), "ed25519:c")):
        with pytest.raises(BundleError, match=r"x\.Y is pinned to publisher key ed25519:b"):
            check_rollback("x.Y", pinned, target, rebased_by_user=False)


def test_record_keeps_the_pin_and_reads_old_records() -> None:
    app = InstalledApp(
        app_id="org.sandbox.TinyTest",
        version="1.0.0",
        image_id="sha256:" + "a" * 64,
        tags=(),
        manifest=tiny_manifest(),
        granted=frozenset(),
        installed_at="2024-01-01T00:00:00+00:00",
        bundle_sha256="0" * 64,
        publisher_key="ed25519:b",
        publisher_lineage=("ed25519:a", "ed25519:b"),
        signed_by="ed25519:b",
        rebased_by_user=True,
    )
    doc = dump_record(app)
    assert parse_record(doc, "r") == app
    for key in ("publisher-key", "publisher-lineage", "signed-by", "rebased-by-user"):
        del doc[key]
    old = parse_record(doc, "r")
    assert old.pin == NO_PIN and not old.rebased_by_user


def test_site_policy_require_signature() -> None:
    site = parse_site_policy({"version": 1, "install": {"require-signature": True}}, "50.toml")
    assert site.require_signature
    assert site.combine(parse_site_policy({}, "10.toml")).require_signature
    assert not parse_site_policy({}, "10.toml").require_signature
    with pytest.raises(PolicyError, match=r"50.toml: install.require-signature: expected true"):
        parse_site_policy({"install": {"require-signature": "yes"}}, "50.toml")
    with pytest.raises(PolicyError, match=r"50\.toml"):
        parse_site_policy({"install": {"require-signatures": True}}, "50.toml")


def test_statement_round_trips_through_the_member(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    sig = sign(statement_for(_header(tmp_path)), key, (Ed25519PrivateKey.generate(),))
    assert parse_signature(dump_signature(sig)) == sig
    assert isinstance(sig.statement, Statement)
