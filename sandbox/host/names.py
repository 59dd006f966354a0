"""Names an app leaves on the host: app ids, cgroups, slices, networks, labels. Pure, no I/O."""

from __future__ import annotations

import re

from sandbox.errors import PolicyError

# Flatpak's rules for application ids, so an id valid here is valid there and vice versa:
# at least three dot-separated elements of [A-Za-z0-9_-], none starting with a digit, '-' only
# in the last element, at most 255 characters (also the longest cgroup directory name).
APP_ID_MAX_LEN = 255
APP_ID_RE = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+\.[A-Za-z_][A-Za-z0-9_-]*"
)

# The cgroup every app cgroup sits under: `/sandbox/<app-id>` with the cgroupfs driver,
# `sandbox.slice/sandbox-<escaped app-id>.slice` with the systemd driver.
CGROUP_ROOT = "sandbox"
SYSTEMD_ROOT_SLICE = "sandbox.slice"
SYSTEMD_SLICE_PREFIX = "sandbox-"
SYSTEMD_SLICE_SUFFIX = ".slice"
SYSTEMD_UNIT_NAME_MAX = 255  # systemd's UNIT_NAME_MAX is 256 including the NUL

# Labels the runtime puts on every container it creates; gc and instances find them by these.
LABEL_APP_ID = "sandbox.app-id"
LABEL_INSTANCE_ID = "sandbox.instance-id"
LABEL_MANAGED = "sandbox.managed"  # value "1": the container (or network) belongs to this library

# An app's own engine network (`network = true`): `sandbox-<app-id>` (what app ids allow is what
# Docker and Podman allow in a network name). Its bridge is named in host/netfilter.py.
NETWORK_PREFIX = "sandbox-"

_SYSTEMD_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.")
_SYSTEMD_HEX_RE = re.compile(r"\\x([0-9a-f]{2})")


_ID_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ID_LAST_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def app_id_problem(app_id: str) -> str | None:
    """None for a valid app id, else which rule it breaks, in words for an error message."""
    if len(app_id) > APP_ID_MAX_LEN:
        return f"longer than {APP_ID_MAX_LEN} characters"
    segments = app_id.split(".")
    if len(segments) < 3:
        return f"must be reverse-DNS with at least 3 segments, like com.example.App: {app_id!r}"
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if not (_ID_LAST_SEGMENT if last else _ID_SEGMENT).fullmatch(segment):
            rule = "A-Z, a-z, 0-9, '_'" + (" or '-'" if last else "")
            return (
                f"segment {segment!r} of {app_id!r} must be made of {rule} and not start "
                "with a digit" + ("" if last else " ('-' is allowed in the last segment only)")
            )
    return None


def is_valid_app_id(app_id: str) -> bool:
    """True for a flatpak-style reverse-DNS id such as `com.example.Game`."""
    # The same rule as app_id_problem() as one regex: app_for_pid calls this on every lookup.
    return len(app_id) <= APP_ID_MAX_LEN and APP_ID_RE.fullmatch(app_id) is not None


def check_app_id(app_id: str) -> str:
    """Return `app_id` unchanged, or raise PolicyError saying which rule it breaks."""
    problem = app_id_problem(app_id)
    if problem is not None:
        raise PolicyError(f"app id {app_id!r}: {problem}")
    return app_id


# An image run by reference that no install vouches for runs as a throwaway identity of its
# own: `<claimed id>-unverified-<first 16 hex of its image id>`, appended to the last segment so
# it stays a valid id whatever that segment holds. Stable for one image (a developer's saves
# persist across runs of it), different for any other; the form is reserved: no manifest and
# no install may name it (distribution/resolve.py refuses them).
UNVERIFIED_MARK = "-unverified-"
UNVERIFIED_HEX = 16
_UNVERIFIED_RE = re.compile(rf"(.+){UNVERIFIED_MARK}([0-9a-f]{{{UNVERIFIED_HEX}}})")
_IMAGE_ID_RE = re.compile(rf"(?:sha256:)?([0-9a-f]{{{UNVERIFIED_HEX}}})[0-9a-f]*")


def unverified_app_id(app_id: str, image_id: str) -> str:
    """The throwaway identity an uninstalled image claiming `app_id` runs as (see above)."""
    match = _IMAGE_ID_RE.fullmatch(image_id)
    if match is None:
        raise PolicyError(f"image id {image_id[:80]!r} is not a sha256 digest")
    identity = check_app_id(app_id) + UNVERIFIED_MARK + match.group(1)
    if len(identity) > APP_ID_MAX_LEN:
        raise PolicyError(
            f"app id {app_id!r} is too long to run as an unverified copy "
            f"({len(identity)} > {APP_ID_MAX_LEN} characters); install the app instead"
        )
    return identity


def unverified_of(app_id: str) -> str | None:
    """The app id a throwaway identity is an unverified copy of; None for any other id."""
    match = _UNVERIFIED_RE.fullmatch(app_id)
    if match is None or not is_valid_app_id(match.group(1)):
        return None
    return match.group(1)


def cgroup_parent_cgroupfs(app_id: str) -> str:
    """The absolute `cgroup_parent` for the cgroupfs driver: `/sandbox/<app-id>`."""
    return f"/{CGROUP_ROOT}/{check_app_id(app_id)}"


def systemd_escape(text: str) -> str:
    """`systemd-escape TEXT` (not --path): escape a string for use inside one unit name part.

    '/' becomes '-', [A-Za-z0-9:_.] stay (except a leading '.'), every other byte of the UTF-8
    encoding becomes `\\xNN`; so '-' itself becomes `\\x2d` and can never split a slice name.
    """
    out: list[str] = []
    for index, char in enumerate(text):
        if char == "/":
            out.append("-")
        elif char in _SYSTEMD_PLAIN and not (index == 0 and char == "."):
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(out)


def systemd_unescape(text: str) -> str | None:
    """Invert `systemd_escape`; None unless `text` is exactly what `systemd_escape` produces.

    Only the canonical spelling is accepted, so one app never has two slice names.
    """
    if "-" in text:
        return None  # '-' separates slice levels; it cannot be part of one escaped name
    raw = bytearray()
    pos = 0
    for match in _SYSTEMD_HEX_RE.finditer(text):
        raw += text[pos : match.start()].encode()
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += text[pos:].encode()
    try:
        decoded = raw.decode()
    except UnicodeDecodeError:
        return None
    return decoded if systemd_escape(decoded) == text else None


def app_slice_name(app_id: str) -> str:
    """The app's slice with the systemd driver: `sandbox-<escaped app-id>.slice`.

    Docker's systemd driver takes this as `cgroup_parent` and creates
    `sandbox.slice/sandbox-<escaped>.slice/` itself, because '-' in a slice name means nesting.
    """
    name = SYSTEMD_SLICE_PREFIX + systemd_escape(check_app_id(app_id)) + SYSTEMD_SLICE_SUFFIX
    if len(name) > SYSTEMD_UNIT_NAME_MAX:
        raise PolicyError(
            f"app id {app_id!r}: its slice name is {len(name)} characters once escaped, "
            f"systemd allows {SYSTEMD_UNIT_NAME_MAX}"
        )
    return name


def app_cgroup_path_systemd(app_id: str) -> str:
    """Where the app's slice sits in the cgroup tree: `/sandbox.slice/sandbox-<escaped>.slice`."""
    return f"/{SYSTEMD_ROOT_SLICE}/{app_slice_name(app_id)}"


def app_network_name(app_id: str) -> str:
    """The app's own engine network, shared by its instances: `sandbox-<app-id>`."""
    return NETWORK_PREFIX + check_app_id(app_id)


def app_id_of_network(name: str) -> str | None:
    """Invert `app_network_name`; None for a name it never produces."""
    if not name.startswith(NETWORK_PREFIX):
        return None
    app_id = name.removeprefix(NETWORK_PREFIX)
    return app_id if is_valid_app_id(app_id) else None
