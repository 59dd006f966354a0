"""Site policy dir and override files on disk: combine in name order, atomic writes, reset."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.config.layers import load_override, load_site_policy, override_path, write_override
from sandbox.errors import PolicyError
from sandbox.policy.layers import UserOverride
from sandbox.policy.vocabulary import Capability, Risk

APP = "com.example.Game"


def test_missing_site_dir_is_an_empty_policy(tmp_path: Path) -> None:
    assert load_site_policy(tmp_path / "nope").deny == frozenset()


def test_site_dir_files_combine(tmp_path: Path) -> None:
    (tmp_path / "10-a.toml").write_text('[deny]\ncapabilities = ["gpu"]\n')
    (tmp_path / "20-b.toml").write_text('[deny]\ncapabilities = ["webcam"]\nmax-risk = "low"\n')
    (tmp_path / "README").write_text("not toml, ignored")
    site = load_site_policy(tmp_path)
    assert site.deny == {Capability.GPU, Capability.WEBCAM}
    assert site.max_risk is Risk.LOW
    assert site.sources == (str(tmp_path / "10-a.toml"), str(tmp_path / "20-b.toml"))


@pytest.mark.parametrize(
    ("text", "message"),
    [("[deny\n", "TOML syntax error"), ("oops = 1\n", "oops: unknown key")],
)
def test_bad_site_file_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "50-bad.toml").write_text(text)
    with pytest.raises(PolicyError) as err:
        load_site_policy(tmp_path)
    assert str(err.value).startswith(str(tmp_path / "50-bad.toml"))
    assert message in str(err.value)


def test_override_write_load_reset(tmp_path: Path) -> None:
    assert load_override(APP, tmp_path) == UserOverride(APP)
    o = UserOverride(APP, grant=frozenset({Capability.NETWORK}))
    path = write_override(o, tmp_path)
    assert path == tmp_path / f"{APP}.toml"
    assert load_override(APP, tmp_path) == o
    assert [p.name for p in tmp_path.iterdir()] == [f"{APP}.toml"]  # no temp file left
    write_override(o.with_reset(), tmp_path)
    assert not path.exists()
    assert load_override(APP, tmp_path) == UserOverride(APP)


def test_override_path_refuses_bad_app_ids(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        override_path("../../etc/passwd", tmp_path)
