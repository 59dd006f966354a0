"""Runs INSIDE a test container: connects, says so, then waits until the server cuts it off."""

import sys
import time

from Xlib import display, error

d = display.Display()
print("connected", flush=True)
try:
    for _ in range(600):
        d.sync()
        time.sleep(0.1)
except (error.ConnectionClosedError, OSError):
    print("cut off", flush=True)
    sys.exit(0)
print("still connected", flush=True)
sys.exit(1)
