"""Unit tests for the strict manifest parser, dump and the image-label round trip."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from manifest_cases import BAD, Bad, bad_doc, to_toml, valid_doc

from sandbox.errors import ManifestError
from sandbox.policy.manifest import (
    LABEL_MANIFEST,
    LABEL_MANIFEST_VERSION,
    MAX_MANIFEST_BYTES,
    OCI_DESCRIPTION,
    OCI_TITLE,
    OCI_VENDOR,
    OCI_VERSION,
    AppInfo,
    Capabilities,
    Limits,
    Manifest,
    StorageSpec,
    dump_manifest,
    manifest_from_labels,
    manifest_to_labels,
    parse_manifest,
    parse_manifest_toml,
)
from sandbox.policy.vocabulary import AudioMode, DisplayRequest


def test_valid_document_parses_into_the_typed_manifest() -> None:
    m = parse_manifest(valid_doc())
    assert m.app.id == "com.example.Game"
    assert m.app.command == ("/opt/game/bin/game", "--fullscreen")
    assert m.app.categories == ("Game", "X-Retro")
    assert m.capabilities.display is DisplayRequest.WAYLAND_OR_X11
    assert m.capabilities.audio == frozenset({AudioMode.PLAYBACK})
    assert (m.capabilities.gpu, m.capabilities.gamepad, m.capabilities.network) == (
        True,
        True,
        False,
    )
    assert m.capabilities.webcam is False  # absent means not asked for
    assert m.capabilities.storage == (StorageSpec("saves", "/home/app/.local/share/game"),)
    assert m.limits == Limits(memory_bytes=2 * 1024**3, cpus=1.5, pids=512)


def test_sections_other_than_app_are_optional() -> None:
    doc = valid_doc()
    del doc["capabilities"], doc["limits"]
    m = parse_manifest(doc)
    assert m.capabilities == Capabilities()
    assert m.limits == Limits()


@pytest.mark.parametrize("case", BAD, ids=[c.kind for c in BAD])
def test_bad_manifest_is_refused_with_the_field_path(case: Bad) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(bad_doc(case))
    assert info.value.field == case.field
    assert case.problem in info.value.problem
    assert str(info.value).startswith(f"{case.field}: ")


def test_there_are_at_least_twenty_distinct_bad_kinds() -> None:
    assert len({c.kind for c in BAD}) == len(BAD) >= 20


@pytest.mark.parametrize(
    ("memory", "expected"),
    [("512M", 512 * 1024**2), ("512m", 512 * 1024**2), ("2G", 2 * 1024**3), ("1T", 1024**4),
     (64 * 1024**2, 64 * 1024**2), ("40000K", 40000 * 1024)],
)  # fmt: skip
def test_memory_accepts_binary_units_and_bytes(memory: Any, expected: int) -> None:
    doc = valid_doc()
    doc["limits"]["memory"] = memory
    assert parse_manifest(doc).limits.memory_bytes == expected


def test_integer_cpus_become_float() -> None:
    doc = valid_doc()
    doc["limits"]["cpus"] = 2
    assert parse_manifest(doc).limits.cpus == 2.0


def test_id_may_have_dash_and_underscore_in_the_last_segment() -> None:
    doc = valid_doc()
    doc["app"]["id"] = "io.github._someone.my-app_2"
    assert parse_manifest(doc).app.id == "io.github._someone.my-app_2"


def test_storage_is_sorted_by_name_whatever_the_document_order() -> None:
    doc = valid_doc()
    doc["capabilities"]["storage"] = {"zeta": "/home/app/z", "alpha": "/var/lib/app/a"}
    names = [s.name for s in parse_manifest(doc).capabilities.storage]
    assert names == sorted(names)


def test_record_alone_is_kept_as_written() -> None:
    doc = valid_doc()
    doc["capabilities"]["audio"] = ["record"]
    assert parse_manifest(doc).capabilities.audio == frozenset({AudioMode.RECORD})


def test_toml_text_parses_like_the_document() -> None:
    assert parse_manifest_toml(to_toml(valid_doc())) == parse_manifest(valid_doc())


def test_toml_syntax_error_names_line_and_column() -> None:
    text = 'manifest-version = 1\n[app]\nid = "com.example.Game"\nname = \n'
    with pytest.raises(ManifestError) as info:
        parse_manifest_toml(text)
    assert info.value.field == "line 4, column 8"
    assert "TOML syntax error" in info.value.problem


def test_toml_values_of_other_types_are_refused() -> None:
    text = to_toml(valid_doc()).replace('"1.2.0"', "1979-05-27")
    with pytest.raises(ManifestError) as info:
        parse_manifest_toml(text)
    assert info.value.field == "app.version"
    assert "must be a string, not date" in info.value.problem


def test_oversized_manifest_is_refused_before_parsing() -> None:
    text = to_toml(valid_doc()) + "#" * MAX_MANIFEST_BYTES
    with pytest.raises(ManifestError, match="at most 65536"):
        parse_manifest_toml(text)


def test_dump_round_trips_the_valid_document() -> None:
    m = parse_manifest(valid_doc())
    assert parse_manifest(dump_manifest(m)) == m
    assert json.loads(json.dumps(dump_manifest(m))) == dump_manifest(m)


# --- labels ------------------------------------------------------------------------------------


def test_labels_carry_the_manifest_and_the_oci_fields() -> None:
    m = parse_manifest(valid_doc())
    labels = manifest_to_labels(m)
    assert labels[LABEL_MANIFEST_VERSION] == "1"
    assert labels[OCI_TITLE] == m.app.name
    assert labels[OCI_VERSION] == m.app.version
    assert labels[OCI_VENDOR] == m.app.vendor
    assert labels[OCI_DESCRIPTION] == m.app.description
    assert json.loads(labels[LABEL_MANIFEST]) == dump_manifest(m)
    assert all("\n" not in v and v.isascii() for v in [labels[LABEL_MANIFEST]])


def test_labels_without_vendor_or_description_omit_those_oci_labels() -> None:
    doc = valid_doc()
    del doc["app"]["vendor"], doc["app"]["description"]
    labels = manifest_to_labels(parse_manifest(doc))
    assert OCI_VENDOR not in labels
    assert OCI_DESCRIPTION not in labels


def _labels() -> dict[str, str]:
    return manifest_to_labels(parse_manifest(valid_doc()))


def _tampered_json(text: str) -> dict[str, str]:
    labels = _labels()
    labels[LABEL_MANIFEST] = text
    return labels


@pytest.mark.parametrize(
    ("labels", "field", "problem"),
    [
        ({}, "", "image has no sandbox manifest"),
        ({k: v for k, v in _labels().items() if k != LABEL_MANIFEST}, "",
         "image has no sandbox manifest"),
        ({k: v for k, v in _labels().items() if k != LABEL_MANIFEST_VERSION},
         LABEL_MANIFEST_VERSION, "missing"),
        ({**_labels(), LABEL_MANIFEST_VERSION: "2"}, LABEL_MANIFEST_VERSION,
         "unsupported manifest version 2 (this sandbox supports 1)"),
        ({**_labels(), LABEL_MANIFEST_VERSION: "one"}, LABEL_MANIFEST_VERSION,
         "must be a number"),
        (_tampered_json("{not json"), LABEL_MANIFEST, "invalid JSON at offset 1"),
        (_tampered_json("[1]"), LABEL_MANIFEST, "must hold a JSON object"),
        (_tampered_json('{"manifest-version": 1, "manifest-version": 1}'), LABEL_MANIFEST,
         "duplicate JSON key"),
        (_tampered_json('{"manifest-version": NaN}'), LABEL_MANIFEST, "NaN is not valid JSON"),
        (_tampered_json(_labels()[LABEL_MANIFEST].replace('"gpu"', '"gpu2"')),
         "capabilities.gpu2", "unknown key"),
        (_tampered_json(_labels()[LABEL_MANIFEST].replace('"storage":{}', '"storage":null')
                        .replace('"saves":"/home/app/.local/share/game"', '"saves":null')),
         "capabilities.storage.saves", "must be a string, not null"),
        ({**_labels(), OCI_TITLE: "Other Game"}, OCI_TITLE, "but the manifest says"),
        ({**_labels(), OCI_VERSION: "9.9"}, OCI_VERSION, "but the manifest says '1.2.0'"),
        ({**_labels(), OCI_VENDOR: "Someone Else"}, OCI_VENDOR, "but the manifest says"),
        (_tampered_json("x" * (MAX_MANIFEST_BYTES + 1)), LABEL_MANIFEST, "larger than"),
    ],
)  # fmt: skip
def test_bad_labels_are_refused_naming_the_label_or_field(
    labels: dict[str, str], field: str, problem: str
) -> None:
    with pytest.raises(ManifestError) as info:
        manifest_from_labels(labels)
    assert info.value.field == field
    assert problem in info.value.problem


def test_labels_without_oci_fields_still_parse() -> None:
    labels = {k: v for k, v in _labels().items() if not k.startswith("org.opencontainers.")}
    assert manifest_from_labels(labels) == parse_manifest(valid_doc())


def test_foreign_labels_are_ignored() -> None:
    labels = {**_labels(), "maintainer": "someone", "org.opencontainers.image.licenses": "MIT"}
    assert manifest_from_labels(labels) == parse_manifest(valid_doc())


# --- property: every valid manifest survives dump and labels -----------------------------------

_PRINTABLE = st.characters(
    blacklist_categories=("Cc", "Cs", "Zl", "Zp"),
    blacklist_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
)
_LINE = st.text(_PRINTABLE, min_size=1, max_size=40).filter(lambda s: s == s.strip())
_SEG = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)
_ID_SEG = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_STORAGE_NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
_STORAGE_ROOTS = ("/home/app", "/var/lib/app", "/srv/data", "/data")


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    segments = draw(st.lists(_ID_SEG, min_size=3, max_size=5))
    names = sorted(draw(st.sets(_STORAGE_NAMES, max_size=4)))
    storage = tuple(
        StorageSpec(n, f"{draw(st.sampled_from(_STORAGE_ROOTS))}/{n}"
                    + "".join(f"/{s}" for s in draw(st.lists(_SEG, max_size=2))))
        for n in names
    )  # fmt: skip
    # Under /opt/app, outside every storage root: storage hiding the command is refused.
    command0 = "/opt/app/" + "/".join(draw(st.lists(_SEG, min_size=1, max_size=4)))
    args = draw(st.lists(st.text(_PRINTABLE, min_size=1, max_size=20), max_size=5))
    memory = draw(st.none() | st.integers(32 * 1024**2, 1024**4))
    return Manifest(
        app=AppInfo(
            id=".".join(segments),
            name=draw(_LINE),
            version=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+~:-]{0,10}", fullmatch=True)),
            command=(command0, *args),
            icon=draw(st.none() | st.just("/usr/share/icons/app.png")),
            categories=tuple(
                draw(
                    st.lists(
                        st.sampled_from(["Game", "Network", "X-Foo", "Utility"]),
                        unique=True,
                        max_size=4,
                    )
                )
            ),
            vendor=draw(st.none() | _LINE),
            description=draw(st.none() | _LINE),
        ),
        capabilities=Capabilities(
            display=draw(st.none() | st.sampled_from(DisplayRequest)),
            audio=frozenset(draw(st.sets(st.sampled_from(AudioMode)))),
            gpu=draw(st.booleans()),
            webcam=draw(st.booleans()),
            gamepad=draw(st.booleans()),
            network=draw(st.booleans()),
            storage=storage,
        ),
        limits=Limits(
            memory_bytes=memory,
            cpus=draw(st.none() | st.floats(0.01, 1024.0)),
            pids=draw(st.none() | st.integers(8, 4_194_304)),
        ),
    )


@given(manifests())
def test_every_valid_manifest_round_trips_through_dump_and_labels(m: Manifest) -> None:
    assert parse_manifest(dump_manifest(m)) == m
    labels = manifest_to_labels(m)
    assert manifest_from_labels(labels) == m
    assert all("\n" not in v for v in labels.values())


@given(manifests())
def test_labels_are_deterministic(m: Manifest) -> None:
    assert manifest_to_labels(m) == manifest_to_labels(parse_manifest(dump_manifest(m)))


def test_smoke_command_is_optional_and_strict() -> None:
    from sandbox.policy.manifest import dump_manifest, parse_manifest, parse_manifest_toml

    text = (
        'manifest-version = 1\n[app]\nid = "com.example.Smoke"\nname = "S"\nversion = "1"\n'
        'command = ["/bin/app"]\n'
        "SMOKE\n[capabilities]\n"
    )
    assert parse_manifest_toml(text.replace("SMOKE", "")).app.smoke == ()
    m = parse_manifest_toml(text.replace("SMOKE", 'smoke = ["/bin/app", "--self-test"]'))
    assert m.app.smoke == ("/bin/app", "--self-test")
    assert parse_manifest(dump_manifest(m)) == m
    for bad, where in [
        ("smoke = []", "app.smoke"),
        ('smoke = ["bin/app"]', "app.smoke[0]"),
        ('smoke = "x"', "app.smoke"),
        ('smoke = ["/bin/app", 3]', "app.smoke[1]"),
    ]:
        with pytest.raises(ManifestError) as info:
            parse_manifest_toml(text.replace("SMOKE", bad))
        assert info.value.field == where
