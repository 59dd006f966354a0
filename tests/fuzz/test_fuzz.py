"""Every parser of outside input, fuzzed a bounded number of times: only its own error, no writes.

The same targets run a million inputs each outside CI (`python3 -m tests.fuzz.run`, see
docs/security.md "Fuzzing"); here each gets a fixed, seeded budget sized to keep this file
well under a minute on a small machine. The crashes found before the parsers were hardened
are kept as fixed regression inputs below.
"""

from __future__ import annotations

import pytest

from tests.fuzz.targets import TARGETS, Target, check, inputs

# Inputs per target in CI; the file-level target verifies a whole .sbx file per input.
BUDGET = {"bundle-file": 600}
DEFAULT_BUDGET = 5000

NEST = 20_000
MANIFEST_HEAD = (
    b'manifest-version = 1\n[app]\nid = "org.example.App"\nname = "App"\n'
    b'version = "1.0"\ncommand = ["/bin/app"]\n'
)
# (target, input): each one crashed its parser (RecursionError, ValueError, OverflowError)
# before the parsers decoded through sandbox/host/documents.py.
KNOWN_CRASHES = [
    ("manifest-labels", b"[" * NEST + b"]" * NEST),
    ("manifest-labels", b'{"manifest-version": ' + b"9" * 5000 + b"}"),
    ("manifest-toml", b"a = " + b"[" * NEST + b"]" * NEST),
    ("manifest-toml", b"a = " + b"{b=" * 5000 + b"1" + b"}" * 5000),
    ("manifest-toml", MANIFEST_HEAD + b"[limits]\ncpus = " + b"9" * 400 + b"\n"),
    ("manifest-toml", MANIFEST_HEAD + b'[limits]\nmemory = "' + b"9" * 5000 + b'M"\n'),
    ("manifest-toml", MANIFEST_HEAD + b"[limits]\npids = " + b"9" * 5000 + b"\n"),
    ("site-policy", b'[limits]\nmax-memory = "' + b"9" * 400 + b'T"\n'),
    ("site-policy", b"[limits]\nmax-cpus = " + b"9" * 400 + b"\n"),
    ("bundle-header", b'{"format": ' + b"[" * NEST + b"]" * NEST + b"}"),
    ("docker-archive-json", b"[" * NEST + b"]" * NEST),
    ("engine-http", b"HTTP/1.1 \xb2\xb2\xb2 OK\r\n\r\n"),
    ("engine-http", b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n"),
    ("engine-answers", b"[" * NEST + b"]" * NEST + b"\n\n{}"),
]
# Crashed before, and are valid input: they must now simply be taken.
KNOWN_CRASHES_NOW_ACCEPTED = [
    ("engine-answers", b'{}\n\n{"CgroupVersion": "\xc2\xb2"}'),  # int("²") after isdigit()
]


@pytest.mark.parametrize("target", TARGETS.values(), ids=list(TARGETS))
def test_target_raises_only_its_error_and_writes_nothing(target: Target) -> None:
    count = BUDGET.get(target.name, DEFAULT_BUDGET)
    gen = inputs(target, count, rng_seed=15)
    findings = [f for f in (check(target, gen()) for _ in range(count)) if f is not None]
    assert findings == [], findings[0]


@pytest.mark.parametrize(("name", "data"), KNOWN_CRASHES, ids=[n for n, _ in KNOWN_CRASHES])
def test_known_crash_is_now_the_documented_error(name: str, data: bytes) -> None:
    target = TARGETS[name]
    assert check(target, data) is None
    with pytest.raises(target.allowed):
        target.run(target.prepare(data))


@pytest.mark.parametrize(
    ("name", "data"), KNOWN_CRASHES_NOW_ACCEPTED, ids=[n for n, _ in KNOWN_CRASHES_NOW_ACCEPTED]
)
def test_known_crash_is_now_accepted(name: str, data: bytes) -> None:
    target = TARGETS[name]
    target.run(target.prepare(data))


@pytest.mark.parametrize("target", TARGETS.values(), ids=list(TARGETS))
def test_every_seed_is_valid_input(target: Target) -> None:
    """The fuzzer starts from inputs the parser accepts, so its edits reach past the first check."""
    accepted = 0
    for seed in target.seeds():
        try:
            target.run(target.prepare(seed))
            accepted += 1
        except target.allowed:
            pass
    assert accepted >= 1


def test_the_check_sees_a_crash_and_a_write(tmp_path: object) -> None:
    import json
    from pathlib import Path

    crash = Target("crash", lambda: [b"[]"], json.loads, ValueError)
    assert check(crash, b"[" * NEST) is not None  # RecursionError is not the allowed class
    out = Path(str(tmp_path)) / "x"
    writer = Target("writer", lambda: [b""], lambda _d: out.write_bytes(b"x"), OSError)
    assert "wrote while parsing" in (check(writer, b"") or "")
