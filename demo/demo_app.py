"""Demo app run inside the sandbox: a window, a tone, a save read back; touches no host path."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import time
import wave

SAVE_DIR = "/home/app/.local/share/demo"
SAVE_FILE = os.path.join(SAVE_DIR, "save.json")


def load_save() -> dict[str, object]:
    try:
        with open(SAVE_FILE, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_save(data: dict[str, object]) -> None:
    tmp = SAVE_FILE + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, SAVE_FILE)


def play_tone(seconds: float = 0.5) -> str:
    path = "/tmp/tone.wav"
    rate = 44100
    with wave.open(path, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = bytearray()
        for i in range(int(rate * seconds)):
            v = int(12000 * math.sin(2 * math.pi * 440 * i / rate))
            frames += struct.pack("<hh", v, v)
        w.writeframes(bytes(frames))
    if not os.environ.get("PULSE_SERVER"):
        return "no sound server granted"
    done = subprocess.run(["paplay", path], check=False, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        return f"paplay failed: {done.stderr.strip()}"
    return "played a 440 Hz tone"


def show_window(title: str, seconds: float) -> str:
    if not os.environ.get("DISPLAY"):
        return "no display granted"
    from Xlib import X, display

    d = display.Display()
    screen = d.screen()
    win = screen.root.create_window(
        10,
        10,
        320,
        120,
        1,
        screen.root_depth,
        background_pixel=screen.white_pixel,
        event_mask=X.ExposureMask,
    )
    win.set_wm_name(title)
    win.set_wm_class("sandbox-demo", "SandboxDemo")
    win.change_property(
        d.intern_atom("_NET_WM_NAME"), d.intern_atom("UTF8_STRING"), 8, title.encode()
    )
    win.map()
    gc = win.create_gc(foreground=screen.black_pixel)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        while d.pending_events():
            d.next_event()
        win.poly_text(gc, 20, 60, [title.encode()])
        d.flush()
        time.sleep(0.1)
    win.destroy()
    d.close()
    return f"showed window {title!r} for {seconds:g} s"


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    save = load_save()
    runs = int(save.get("runs", 0)) + 1  # type: ignore[call-overload]
    print(f"demo: run {runs}; previous save: {json.dumps(save) if save else 'none'}", flush=True)
    print(
        f"demo: uid {os.getuid()}, pid {os.getpid()} (in the container's pid namespace)", flush=True
    )
    print(f"demo: {play_tone()}", flush=True)
    write_save({"runs": runs, "last": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"demo: wrote {SAVE_FILE}", flush=True)
    print(f"demo: {show_window(f'Sandbox Demo - run {runs}', seconds)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
