"""The double-click path: `sandbox install --gui` shows the review window on a real X server."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from integration.components import X11Display, require_binary

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "distribution"))

from bundle_factory import Knobs, build_bundle, tiny_manifest  # noqa: E402

TITLE = "Install Tiny Test?"
APP_ID = "org.sandbox.TinyTest"


def artifacts_dir() -> Path:
    path = Path(os.environ.get("SANDBOX_TEST_ARTIFACTS", "/tmp/sandbox-test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _env(x11: X11Display, tmp_path: Path, docker_client_url: str) -> dict[str, str]:
    env = dict(os.environ, DISPLAY=x11.display, DOCKER_HOST=docker_client_url)
    if x11.xauthority:
        env["XAUTHORITY"] = x11.xauthority
    env.update(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    return env


def xwd_to_png(xwd: bytes, out: Path) -> float:
    """A 24/32-bit ZPixmap XWD dump -> PNG at `out`; returns the pixels' grey-level spread."""
    fields = struct.unpack(">25I", xwd[:100])
    header_size, width, height = fields[0], fields[4], fields[5]
    byte_order, bpp, stride, ncolors = fields[7], fields[11], fields[12], fields[19]
    masks = fields[14:17]
    assert bpp == 32, f"expected a 32-bit dump, got {bpp}"
    data = xwd[header_size + 12 * ncolors :]
    endian = "<" if byte_order == 0 else ">"
    rows = bytearray()
    greys = []
    for y in range(height):
        rows.append(0)
        line = struct.unpack_from(f"{endian}{width}I", data, y * stride)
        for px in line:
            rgb = [(px & m) >> (m & -m).bit_length() - 1 for m in masks]
            rows += bytes(rgb)
            greys.append(sum(rgb) / 3)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    out.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(rows)))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    mean = sum(greys) / len(greys)
    return (sum((g - mean) ** 2 for g in greys) / len(greys)) ** 0.5 / 255


def _find_window(env: dict[str, str], timeout_s: float = 30.0, title: str = TITLE) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["xdotool", "search", "--name", f"^{re.escape(title)}$"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.stdout.strip():
            return out.stdout.split()[0]
        time.sleep(0.2)
    pytest.fail(f"no window titled {title!r} appeared")


def _key(env: dict[str, str], window: str, key: str) -> None:
    subprocess.run(["xdotool", "windowfocus", "--sync", window], env=env, check=False)
    subprocess.run(["xdotool", "key", "--clearmodifiers", key], env=env, check=True)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.sbx"
    path.write_bytes(build_bundle(tiny_manifest()))
    return path


def test_review_window_shows_and_cancel_installs_nothing(
    x11_display: X11Display, docker_client_url: str, tmp_path: Path, bundle: Path
) -> None:
    for tool in ("xdotool", "xwininfo", "xwd"):
        require_binary(tool)
    env = _env(x11_display, tmp_path, docker_client_url)
    proc = subprocess.Popen(["sandbox", "install", "--gui", str(bundle)], env=env)
    try:
        window = _find_window(env)
        info = subprocess.run(
            ["xwininfo", "-id", window], env=env, capture_output=True, text=True, check=True
        ).stdout
        assert "IsViewable" in info
        width = int(info.split("Width:")[1].split()[0])
        height = int(info.split("Height:")[1].split()[0])
        assert width > 200 and height > 150
        time.sleep(0.5)  # let Tk finish drawing
        png = artifacts_dir() / "install-review.png"
        xwd = subprocess.run(
            ["xwd", "-silent", "-id", window], env=env, capture_output=True, check=True
        ).stdout
        spread = xwd_to_png(xwd, png)
        assert float(spread) > 0.02, "the screenshot is blank"
        shutil.copy(png, tmp_path / png.name)
        _key(env, window, "Escape")
        assert proc.wait(timeout=20) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "data" / "sandbox" / "installed" / f"{APP_ID}.json").exists()


def test_install_button_installs(
    x11_display: X11Display, docker_client_url: str, tmp_path: Path, bundle: Path
) -> None:
    require_binary("xdotool")
    env = _env(x11_display, tmp_path, docker_client_url)
    proc = subprocess.Popen(["sandbox", "install", "--gui", str(bundle)], env=env)
    try:
        window = _find_window(env)
        _key(env, window, "alt+i")
        record = tmp_path / "data" / "sandbox" / "installed" / f"{APP_ID}.json"
        deadline = time.monotonic() + 60
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert record.exists()
        time.sleep(0.3)
        _key(env, window, "Escape")  # the Cancel button became Close
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["sandbox", "uninstall", APP_ID], env=env, capture_output=True, check=False)


def test_hostile_bundle_opens_an_error_window_and_exits_2(
    x11_display: X11Display, docker_client_url: str, tmp_path: Path
) -> None:
    for tool in ("xdotool", "xwd"):
        require_binary(tool)
    hostile = tmp_path / "hostile.sbx"
    hostile.write_bytes(build_bundle(tiny_manifest(), knobs=Knobs(corrupt_layer=True)))
    env = _env(x11_display, tmp_path, docker_client_url)
    before = subprocess.run(
        ["docker", "images", "-qa", "--no-trunc"], capture_output=True, text=True, check=True
    ).stdout
    proc = subprocess.Popen(["sandbox", "install", "--gui", str(hostile)], env=env)
    try:
        window = _find_window(env, title="Cannot install")
        time.sleep(0.5)  # let Tk finish drawing
        xwd = subprocess.run(
            ["xwd", "-silent", "-id", window], env=env, capture_output=True, check=True
        ).stdout
        png = artifacts_dir() / "install-refused.png"
        assert xwd_to_png(xwd, png) > 0.02, "the error window is blank"
        _key(env, window, "Escape")
        assert proc.wait(timeout=20) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "data" / "sandbox").exists()  # no record, no entry, nothing
    after = subprocess.run(
        ["docker", "images", "-qa", "--no-trunc"], capture_output=True, text=True, check=True
    ).stdout
    assert set(after.split()) == set(before.split())
