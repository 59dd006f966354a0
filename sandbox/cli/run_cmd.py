"""`sandbox run APP-ID|IMAGE [--yes] [--detach] [-- ARGS]`: consent, then run; no launch logic."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.cli import EXIT_USAGE

if TYPE_CHECKING:
    from sandbox.policy.vocabulary import Permission
    from sandbox.runtime.prepare import Prepared


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run an app sandboxed (asks for consent first)",
        description="Run APP-ID (an installed app) or IMAGE (a local image: as its installed "
        "app if it is that app's installed image, refused if it claims an installed app's id "
        "otherwise, else as an unverified copy with data of its own). Shows what the app would "
        "get on this host and asks y/N unless --yes. Output is forwarded; Ctrl-C or SIGTERM "
        "stops the app. Exits with the app's exit code.",
    )
    p.add_argument("target", metavar="APP-ID|IMAGE")
    p.add_argument("args", nargs=argparse.REMAINDER, help="after --: arguments for the app")
    p.add_argument("--yes", "-y", action="store_true", help="consent without asking")
    p.add_argument("--detach", "-d", action="store_true", help="start it and return")
    p.add_argument("--docker-host", metavar="URL", help="engine to use (default: DOCKER_HOST)")
    p.add_argument("--site-policy", metavar="DIR", type=Path, help="site policy dir to use")
    p.add_argument("--overrides", metavar="DIR", type=Path, help="user override dir to use")
    p.set_defaults(handler=run)


def _consent(review: str) -> bool | None:
    """True/False from the user; None when stdin cannot ask (not a tty)."""
    sys.stderr.write(review)
    if not sys.stdin.isatty():
        return None
    sys.stderr.write("Run it with these permissions? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    from sandbox.distribution.resolve import resolve
    from sandbox.runtime.prepare import identity_note, prepare

    app_args = tuple(args.args[1:] if args.args[:1] == ["--"] else args.args)
    resolved = resolve(args.target, engine_url=args.docker_host)
    prepared = prepare(resolved.image, site_policy=args.site_policy, overrides=args.overrides)
    # An installed app was reviewed at install; ask again only if the plan now gives more.
    grown = resolved.not_consented(prepared.plan)
    if not args.yes and grown != ():
        refused = _ask(prepared, grown)
        if refused is not None:
            return refused
    elif (note := identity_note(prepared)) is not None:
        print(f"sandbox: {note}", file=sys.stderr)  # no review shown: say who it runs as
    return _launch(prepared, app_args, detach=args.detach)


def _ask(prepared: Prepared, grown: tuple[Permission, ...] | None) -> int | None:
    """Show the review and ask; the exit code when the app must not start, else None."""
    from sandbox.runtime.prepare import review as review_of

    review = review_of(prepared)
    if grown:
        review += "\n\nNot agreed to at install: " + ", ".join(str(p) for p in grown)
    ok = _consent(review)
    if ok is None:
        print(
            "sandbox: error: cannot ask for consent: stdin is not a terminal; "
            "review with `sandbox plan` and pass --yes",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not ok:
        print("sandbox: not started", file=sys.stderr)
        return 1
    return None


def _launch(prepared: Prepared, app_args: tuple[str, ...], *, detach: bool) -> int:
    from sandbox.runtime import session as rt

    stdio = rt.Stdio(
        stdout=sys.stdout.buffer,
        stderr=sys.stderr.buffer,
        stdin_fd=0 if sys.stdin.isatty() else None,
    )
    # Signals are held off until the session exists, then each one stops the app; the
    # session's own teardown runs when wait() returns, so a signal never skips it.
    received: list[int] = []
    old = {s: signal.signal(s, lambda n, _f: received.append(n)) for s in _SIGNALS}
    try:
        session = rt.launch(prepared, args=app_args, stdio=stdio, detach=detach)
    except BaseException:
        _restore(old)
        raise
    if detach:
        _restore(old)
        print(session.instance_id)
        return 0

    def on_signal(_n: int, _f: object) -> None:
        session.stop_in_background()

    for s in _SIGNALS:
        signal.signal(s, on_signal)
    if received:
        session.stop_in_background()
    try:
        code = session.wait()
    finally:
        _restore(old)
    for problem in session.teardown_problems:
        print(f"sandbox: warning: teardown: {problem}", file=sys.stderr)
    return code


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _restore(old: dict[signal.Signals, Any]) -> None:
    for s, handler in old.items():
        signal.signal(s, handler)
