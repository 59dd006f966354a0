"""Pulse probe: PULSE_SERVER resolution, server kind, and facts from fake pulsectl server_info."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.host.bounded_io import Missing
from sandbox.policy.facts import AudioServerKind
from sandbox.probes import pulse


@dataclass
class FakeServerInfo:
    """The attributes pulsectl's PulseServerInfo carries."""

    server_name: str
    server_version: str
    default_sink_name: str | None
    default_source_name: str | None


def test_pulseaudio_server_info() -> None:
    info = FakeServerInfo("pulseaudio", "16.1", "test_null", "test_null.monitor")
    facts = pulse.facts_from_server_info(info, "/run/user/1000/pulse/native")
    assert facts.available and facts.reason is None
    assert facts.server is AudioServerKind.PULSEAUDIO
    assert (facts.server_name, facts.server_version) == ("pulseaudio", "16.1")
    assert (facts.default_sink, facts.default_source) == ("test_null", "test_null.monitor")
    assert facts.socket_path == "/run/user/1000/pulse/native"


def test_pipewire_pulse_says_pulseaudio_but_is_pipewire() -> None:
    info = FakeServerInfo(
        "PulseAudio (on PipeWire 0.3.65)",
        "15.0.0",
        "alsa_output.pci-0000_00_1f.3.analog-stereo",
        "alsa_input.pci-0000_00_1f.3.analog-stereo",
    )
    facts = pulse.facts_from_server_info(info, "/run/user/1000/pulse/native")
    assert facts.server is AudioServerKind.PIPEWIRE
    assert facts.server_name == info.server_name
    assert facts.default_sink == info.default_sink_name


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("pulseaudio", AudioServerKind.PULSEAUDIO),
        ("PulseAudio", AudioServerKind.PULSEAUDIO),
        ("PulseAudio (on PipeWire 1.0.5)", AudioServerKind.PIPEWIRE),
        ("pipewire-pulse", AudioServerKind.PIPEWIRE),
        ("some other server", AudioServerKind.OTHER),
        ("", AudioServerKind.OTHER),
    ],
)
def test_server_kind(name: str, kind: AudioServerKind) -> None:
    assert pulse.server_kind(name) is kind


def test_no_default_sink_is_none_not_empty_text() -> None:
    facts = pulse.facts_from_server_info(FakeServerInfo("pulseaudio", "16.1", "", None), "/s")
    assert facts.default_sink is None and facts.default_source is None


@pytest.mark.parametrize(
    "value",
    [
        "unix:/tmp/p/native",
        "/tmp/p/native",
        "{0123abcd}unix:/tmp/p/native",
        "tcp:h unix:/tmp/p/native",
    ],
)
def test_pulse_server_local_forms(value: str) -> None:
    where = pulse.resolve_socket({"PULSE_SERVER": value}, lambda _: False)
    assert isinstance(where, pulse.PulseSocket)
    assert (where.path, where.source) == ("/tmp/p/native", "PULSE_SERVER")


@pytest.mark.parametrize("value", ["tcp:localhost:4713", "tcp6:[::1]", "myhost", "{id}tcp:h"])
def test_pulse_server_network_forms_are_unsupported(value: str) -> None:
    where = pulse.resolve_socket({"PULSE_SERVER": value}, lambda _: True)
    assert isinstance(where, Missing) and "unsupported" in where.reason


def test_default_socket_is_in_the_runtime_dir_then_the_system_one() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    user = "/run/user/1000/pulse/native"
    where = pulse.resolve_socket(env, lambda p: p == user)
    assert isinstance(where, pulse.PulseSocket) and where.path == user
    system = pulse.resolve_socket(env, lambda p: p == pulse.SYSTEM_SOCKET)
    assert isinstance(system, pulse.PulseSocket) and system.source == "system"
    none = pulse.resolve_socket(env, lambda _: False)
    assert isinstance(none, Missing) and user in none.reason
    unset = pulse.resolve_socket({}, lambda _: False)
    assert isinstance(unset, Missing) and "XDG_RUNTIME_DIR" in unset.reason


def test_probe_of_a_missing_socket_names_it(tmp_path: Path) -> None:
    facts = pulse.probe({"PULSE_SERVER": f"unix:{tmp_path}/none"}, 1.0)
    assert not facts.available and facts.reason is not None
    assert f"{tmp_path}/none" in facts.reason
