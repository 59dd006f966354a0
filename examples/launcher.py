#!/usr/bin/env python3
"""Example launcher embedding sandbox: plan, show the review, launch, wait asynchronously.

Usage: examples/launcher.py APP-ID|IMAGE [ARGS...]   (stops the app after --timeout seconds)
APP-ID is an installed app; IMAGE a local image (see docs/security.md "Identity").
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import sandbox


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target")
    parser.add_argument("args", nargs="*")
    parser.add_argument("--timeout", type=float, default=60.0)
    opts = parser.parse_args()

    prepared = sandbox.plan(opts.target)
    # A real launcher shows a dialog here; the review says when the target runs as an
    # unverified copy (an image no install vouches for) with data of its own.
    print(sandbox.review(prepared), file=sys.stderr)

    # The app runs in the engine, not in our process group: Ctrl-C or a SIGTERM to this
    # process would end only us and leave the app running. So each signal stops the app
    # (a second one kills it); wait_async() below then returns and tears down. Installed
    # before launch(): a signal during the launch is handled once launch() has returned.
    session: sandbox.Session | None = None

    def on_signal() -> None:
        if session is not None:
            session.stop_in_background()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    session = sandbox.launch(
        prepared,
        args=tuple(opts.args),
        stdio=sandbox.Stdio(stdout=sys.stdout.buffer, stderr=sys.stderr.buffer),
    )
    print(f"started {session.app_id} as instance {session.instance_id}", file=sys.stderr)
    try:
        code = await asyncio.wait_for(session.wait_async(), opts.timeout)
    except TimeoutError:
        session.stop()
        code = await session.wait_async()
    print(f"{session.app_id} exited with {code}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
