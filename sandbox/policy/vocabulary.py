"""The capability vocabulary as types: what a manifest may ask for and a user may grant. Pure."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from sandbox.errors import PolicyError


class Capability(enum.StrEnum):
    """Every fixed capability; `storage.<name>` is the parametric `Storage` below."""

    DISPLAY_WAYLAND = "display.wayland"
    DISPLAY_X11 = "display.x11"
    DISPLAY_X11_TRUSTED = "display.x11-trusted"
    AUDIO_PLAYBACK = "audio.playback"
    AUDIO_RECORD = "audio.record"
    GPU = "gpu"
    WEBCAM = "webcam"
    GAMEPAD = "gamepad"
    NETWORK = "network"


class Risk(enum.IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class DisplayRequest(enum.StrEnum):
    """The manifest's `capabilities.display` value."""

    WAYLAND = "wayland"
    X11 = "x11"
    X11_TRUSTED = "x11-trusted"
    # conditional: Wayland where the host has it, else untrusted X11
    WAYLAND_OR_X11 = "wayland-or-x11"


class AudioMode(enum.StrEnum):
    PLAYBACK = "playback"
    RECORD = "record"


STORAGE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True, order=True)
class Storage:
    """`storage.<name>`: one per-app persistent dir."""

    name: str

    def __post_init__(self) -> None:
        if not STORAGE_NAME.match(self.name):
            raise PolicyError(
                f"storage.{self.name}: storage names are 1-32 of a-z, 0-9, '_' or '-', "
                "starting with a letter"
            )

    def __str__(self) -> str:
        return f"storage.{self.name}"


Permission = Capability | Storage


def parse_permission(text: str) -> Permission:
    """`"gpu"` -> Capability.GPU, `"storage.saves"` -> Storage("saves"); unknown names fail."""
    if text.startswith("storage."):
        return Storage(text.removeprefix("storage."))
    try:
        return Capability(text)
    except ValueError:
        known = ", ".join(sorted([c.value for c in Capability] + ["storage.<name>"]))
        raise PolicyError(f"unknown capability {text!r} (known: {known})") from None


def permission_sort_key(p: Permission) -> str:
    return str(p)
