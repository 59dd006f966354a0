"""Per-permission rules for display, audio, storage and network: requests built; pure, no I/O."""

from __future__ import annotations

import posixpath

from sandbox.errors import PolicyError
from sandbox.policy.facts import AudioServerKind, HostFacts
from sandbox.policy.mounts import at_or_below
from sandbox.policy.outcome import Ask, Outcome, unavailable
from sandbox.policy.plan import (
    GrantState,
    PulseProxyRequest,
    StorageRequest,
    WaylandSocketRequest,
    X11CookieRequest,
)
from sandbox.policy.vocabulary import Capability, Permission, Storage

FORBIDDEN_TARGET_ROOTS = ("/proc", "/sys", "/dev")


# --- display ------------------------------------------------------------------------------------


def wayland_outcome(facts: HostFacts) -> Outcome:
    w = facts.wayland
    if not (w.available and w.display and w.socket_path):
        return unavailable(f"no Wayland compositor ({w.reason or 'not found'})")
    return Outcome(
        GrantState.GRANTED,
        f"Wayland ({w.display})",
        requests=(WaylandSocketRequest(display=w.display, socket_path=w.socket_path),),
    )


def wayland(ask: Ask) -> Outcome:
    return wayland_outcome(ask.facts)


def _wayland_in_use(facts: HostFacts, granted: frozenset[Permission]) -> bool:
    return (
        Capability.DISPLAY_WAYLAND in granted and wayland_outcome(facts).state is GrantState.GRANTED
    )


def _x11_missing(facts: HostFacts) -> str | None:
    x = facts.x11
    if not (x.available and x.display and x.socket_path):
        return f"no X server ({x.reason or 'not found'})"
    return None


def _x11_request(facts: HostFacts, *, trusted: bool) -> X11CookieRequest:
    x = facts.x11
    assert x.display and x.socket_path  # _x11_missing said so
    return X11CookieRequest(
        trusted=trusted, display=x.display, socket_path=x.socket_path, xauthority=x.xauthority
    )


def x11(ask: Ask) -> Outcome:
    facts = ask.facts
    if ask.entry.conditional and _wayland_in_use(facts, ask.granted):
        return Outcome(GrantState.FALLBACK_UNUSED, "Wayland is used instead")
    missing = _x11_missing(facts)
    if Capability.DISPLAY_X11_TRUSTED in ask.granted and missing is None:
        return Outcome(GrantState.GRANTED, f"X11 ({facts.x11.display}) with the trusted cookie")
    if missing:
        return unavailable(missing)
    if not facts.x11.security_extension:
        # never fall back to a trusted cookie: that would silently grant display.x11-trusted
        return unavailable("the X server lacks the SECURITY extension")
    return Outcome(
        GrantState.GRANTED,
        f"X11 ({facts.x11.display}), untrusted: cannot read other windows",
        requests=(_x11_request(facts, trusted=False),),
    )


def x11_trusted(ask: Ask) -> Outcome:
    missing = _x11_missing(ask.facts)
    if missing:
        return unavailable(missing)
    return Outcome(
        GrantState.GRANTED,
        f"X11 ({ask.facts.x11.display}), trusted: can read other windows and inject keystrokes",
        requests=(_x11_request(ask.facts, trusted=True),),
    )


# --- audio, network, storage --------------------------------------------------------------------


def audio(ask: Ask) -> Outcome:
    a = ask.facts.audio
    if not (a.available and a.socket_path):
        return unavailable(f"no sound server ({a.reason or 'not found'})")
    if a.server not in (AudioServerKind.PULSEAUDIO, AudioServerKind.PIPEWIRE):
        return unavailable(f"the sound server ({a.server_name}) does not speak PulseAudio")
    request = PulseProxyRequest(
        app_id=ask.policy.app.id,
        app_name=ask.policy.app.name,
        server_socket=a.socket_path,
        playback=Capability.AUDIO_PLAYBACK in ask.granted,
        record=Capability.AUDIO_RECORD in ask.granted,
    )
    server = a.server_name or str(a.server)
    if ask.entry.permission is Capability.AUDIO_RECORD:
        detail = f"records from {a.default_source or 'the default input'} through a private proxy"
    else:
        detail = f"plays through a private proxy to {server}"
    return Outcome(GrantState.GRANTED, detail, requests=(request,))


def network(ask: Ask) -> Outcome:
    d = ask.facts.docker
    base = "a network of its own with internet access"
    if d.network_fenced:
        return Outcome(GrantState.GRANTED, f"{base}, fenced from other apps and this computer")
    why = d.network_fence_problem or "the probe could not tell"
    return Outcome(GrantState.GRANTED, f"{base}; NOT fenced from this computer's services ({why})")


def storage(ask: Ask) -> Outcome:
    p = ask.entry.permission
    assert isinstance(p, Storage)
    spec = next((s for s in ask.policy.storage if s.name == p.name), None)
    if spec is None:
        return unavailable("the app declares no path for it")
    check_target(spec.path, str(p))
    return Outcome(
        GrantState.GRANTED,
        f"a private folder of this app at {spec.path}",
        requests=(StorageRequest(app_id=ask.policy.app.id, name=p.name, target=spec.path),),
    )


def check_target(target: str, what: str) -> None:
    """A storage target must be a normalized absolute path that covers no kernel interface."""
    if not target.startswith("/") or posixpath.normpath(target) != target or target == "/":
        raise PolicyError(f"{what}: {target!r} is not a normalized absolute path below /")
    if any(at_or_below(target, root) for root in FORBIDDEN_TARGET_ROOTS):
        raise PolicyError(f"{what}: {target!r} would cover {target.split('/')[1]!r} in the app")
