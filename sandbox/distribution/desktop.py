"""Menu integration: desktop entries, icons, the .sbx MIME type; writes only under the data dir.

Writes only under the given data dir and runs the freedesktop cache tools when present.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sandbox.distribution.bundle_format import EXTENSION, MIME_TYPE
from sandbox.fileutil import write_atomic
from sandbox.policy.manifest import Manifest

ENTRY_PREFIX: Final = "sandbox-"
INSTALLER_ENTRY: Final = "sandbox-installer.desktop"
MIME_PACKAGE: Final = "sandbox-bundle.xml"
# hicolor's fixed-size dirs (its index.theme); an icon of another size goes to the nearest one
HICOLOR_SIZES: Final = (16, 22, 24, 32, 36, 48, 64, 72, 96, 128, 192, 256, 512)
_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
_TOOL_TIMEOUT_S: Final = 20


@dataclass(frozen=True)
class IconFile:
    relative: Path  # under $XDG_DATA_HOME/icons
    data: bytes


@dataclass(frozen=True)
class DesktopFiles:
    desktop: Path
    icon: Path | None


def entry_name(app_id: str) -> str:
    return f"{ENTRY_PREFIX}{app_id}.desktop"


def _escape(value: str) -> str:
    # desktop entry string escapes; the manifest already refuses control characters
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace(";", "\\;")


def icon_file(app_id: str, data: bytes | None) -> IconFile | None:
    """Where the icon goes in the hicolor theme: PNG by the size in its header, SVG scalable."""
    if not data:
        return None
    if data[:8] == _PNG_MAGIC and len(data) >= 24 and data[12:16] == b"IHDR":
        width = int.from_bytes(data[16:20], "big")
        height = int.from_bytes(data[20:24], "big")
        if width <= 0 or height <= 0:
            return None
        size = min(HICOLOR_SIZES, key=lambda s: (abs(s - max(width, height)), s))
        return IconFile(Path("hicolor") / f"{size}x{size}" / "apps" / f"{app_id}.png", data)
    head = data[:1024].lstrip()
    if head.startswith(b"<?xml") or head.startswith(b"<svg"):
        return IconFile(Path("hicolor") / "scalable" / "apps" / f"{app_id}.svg", data)
    return None


def app_entry_text(manifest: Manifest, has_icon: bool) -> str:
    """The menu entry of an installed app; StartupWMClass is the app id (see docs/bundle.md)."""
    app = manifest.app
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        f"Name={_escape(app.name)}",
        f"Comment={_escape(app.description or f'{app.name}, sandboxed')}",
        f"Exec=sandbox run {app.id} %U",
        "Terminal=false",
    ]
    if has_icon:
        lines.append(f"Icon={app.id}")
    if app.categories:
        lines.append("Categories=" + "".join(f"{c};" for c in app.categories))
    lines += [
        f"StartupWMClass={app.id}",
        f"X-Sandbox-AppId={app.id}",
        f"X-Sandbox-Version={_escape(app.version)}",
    ]
    return "\n".join(lines) + "\n"


def installer_entry_text() -> str:
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Version=1.4\n"
        "Name=Sandbox App Installer\n"
        f"Comment=Review the permissions of a sandboxed app ({EXTENSION}) and install it\n"
        "Exec=sandbox install --gui %f\n"
        "Icon=system-software-install\n"
        "Terminal=false\n"
        "NoDisplay=true\n"
        f"MimeType={MIME_TYPE};\n"
        "Categories=System;Settings;PackageManager;\n"
    )


def mime_package_xml() -> str:
    # The first member of every bundle is sandbox-bundle.json, so its name opens the file.
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<mime-info xmlns="http://www.freedesktop.org/standards/shared-mime-info">
  <mime-type type="{MIME_TYPE}">
    <comment>Sandboxed app bundle</comment>
    <sub-class-of type="application/x-tar"/>
    <glob pattern="*{EXTENSION}"/>
    <magic priority="60">
      <match type="string" offset="0" value="sandbox-bundle.json"/>
    </magic>
  </mime-type>
</mime-info>
"""


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode)


def _run_tool(argv: list[str], env_extra: dict[str, str] | None = None) -> str | None:
    """Run a cache tool if installed; a note on failure (the files are still in place)."""
    if shutil.which(argv[0]) is None:
        return f"{argv[0]} is not installed; menus may refresh only at next login"
    env = dict(os.environ, **(env_extra or {}))
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]} failed: {exc}"
    if done.returncode != 0:
        return f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[:200]}"
    return None


def refresh_caches(data_home: Path) -> tuple[str, ...]:
    notes = [
        _run_tool(["update-desktop-database", "-q", str(data_home / "applications")]),
        _run_tool(["update-mime-database", str(data_home / "mime")]),
    ]
    return tuple(n for n in notes if n)


def install_entry(manifest: Manifest, icon: bytes | None, data_home: Path) -> DesktopFiles:
    """Write the app's icon and menu entry (replacing an older version's)."""
    app_id = manifest.app.id
    remove_entry(app_id, data_home)  # an update may change the icon's size or kind
    target = icon_file(app_id, icon)
    icon_path: Path | None = None
    if target is not None:
        icon_path = data_home / "icons" / target.relative
        _write_atomic(icon_path, target.data)
    desktop = data_home / "applications" / entry_name(app_id)
    _write_atomic(desktop, app_entry_text(manifest, target is not None).encode())
    return DesktopFiles(desktop, icon_path)


def remove_entry(app_id: str, data_home: Path) -> tuple[Path, ...]:
    """Remove the app's menu entry and every icon of it in hicolor; returns what went."""
    gone = []
    candidates = [data_home / "applications" / entry_name(app_id)]
    hicolor = data_home / "icons" / "hicolor"
    dirs = [f"{s}x{s}" for s in HICOLOR_SIZES] + ["scalable"]
    candidates += [
        hicolor / d / "apps" / f"{app_id}{ext}" for d in dirs for ext in (".png", ".svg")
    ]
    for path in candidates:
        try:
            path.unlink()
            gone.append(path)
        except FileNotFoundError:
            continue
    return tuple(gone)


def register_bundle_type(data_home: Path) -> tuple[str, ...]:
    """The .sbx MIME type and the installer as its default handler (idempotent)."""
    _write_atomic(data_home / "mime" / "packages" / MIME_PACKAGE, mime_package_xml().encode())
    _write_atomic(data_home / "applications" / INSTALLER_ENTRY, installer_entry_text().encode())
    notes = list(refresh_caches(data_home))
    note = _run_tool(
        ["xdg-mime", "default", INSTALLER_ENTRY, MIME_TYPE], {"XDG_DATA_HOME": str(data_home)}
    )
    if note:
        notes.append(note)
    return tuple(notes)
