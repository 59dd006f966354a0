"""Runs INSIDE a test container: a raw Wayland client that binds the registry, then waits for EOF.

Speaks just enough of the wire protocol (wl_display.get_registry) to prove a live connection;
prints "connected", then "ended" when the compositor closes it.
"""

import os
import socket
import struct
import sys

path = os.path.join(os.environ["XDG_RUNTIME_DIR"], os.environ["WAYLAND_DISPLAY"])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(path)
# object 1 (wl_display), opcode 1 (get_registry), size 12, new_id 2
sock.sendall(struct.pack("<IIi", 1, (12 << 16) | 1, 2))
first = sock.recv(4096)
if not first:
    sys.exit("no globals")
print("connected", flush=True)
sock.settimeout(120)
while True:
    try:
        data = sock.recv(4096)
    except TimeoutError:
        sys.exit("still connected")
    except ConnectionResetError:
        data = b""
    if not data:
        print("ended", flush=True)
        sys.exit(0)
