"""Collect the guest suite only inside the desktop guest that integration/vm.sh boots.

The guest image carries /etc/sandbox-desktop-guest; anywhere else (the host's `pytest`, whose
testpaths include integration/, and CI) nothing in this directory is collected at all.
"""

from __future__ import annotations

from pathlib import Path

GUEST_MARKER = Path("/etc/sandbox-desktop-guest")


def in_guest() -> bool:
    return GUEST_MARKER.is_file()


collect_ignore_glob = [] if in_guest() else ["*.py"]
