"""The one error tree of sandbox; every library failure is a SandboxError. No I/O here."""

from __future__ import annotations


class SandboxError(Exception):
    """Base of every error the library raises on purpose."""


class ManifestError(SandboxError):
    """A manifest (file or image labels) is malformed; the message starts with the field path."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class PolicyError(SandboxError):
    """A policy file, site policy or user override is malformed or contradicts itself."""


class ProbeError(SandboxError):
    """A probe could not run at all (a missing component is a fact, not this error)."""


class ProviderError(SandboxError):
    """A provider could not set up or tear down a host resource."""


class LaunchError(SandboxError):
    """The engine refused or failed to create, start or stop a container."""


class UnavailableError(SandboxError):
    """A host component the command needs is missing or does not answer (the container engine,
    a display server, a cgroup hierarchy): the input was fine, the host is not ready for it.

    Raised as itself where no narrower class fits (`sandbox windows` without an X display).
    """


class EngineUnavailableError(UnavailableError, LaunchError):
    """No container engine to talk to: no endpoint resolved, or nothing listening there.

    Also a LaunchError, so every caller that handles the engine's failures handles this one.
    """


class ComponentUnavailableError(UnavailableError, ProviderError):
    """A host component a provider needs at launch is absent (no X socket, no cgroup hierarchy).

    Also a ProviderError, so every caller that handles a provider's failures handles this one.
    """


class BundleError(SandboxError):
    """An app bundle file is malformed or hostile; the message names the member."""

    def __init__(self, member: str, problem: str) -> None:
        self.member = member
        self.problem = problem
        super().__init__(f"{member}: {problem}" if member else problem)


class IdentityError(SandboxError):
    """A launch target may not run as the app it names: an image claiming an installed app's id
    that is not that app's installed image, or an APP-ID that is not installed."""


class CgroupError(LaunchError):
    """The app's parent cgroup (cgroupfs dirs or systemd slice) could not be made or removed."""


class CgroupUnavailableError(UnavailableError, CgroupError):
    """No cgroup hierarchy to put the app's parent cgroup in: the host is not ready for it."""
