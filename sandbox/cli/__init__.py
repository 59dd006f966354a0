"""The command line, the only place that prints or exits; command logic stays in *_cmd modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from sandbox.errors import SandboxError, UnavailableError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad input: malformed manifest, unknown capability, bad path, hostile bundle
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class ExitStatus:
    """One documented exit status: its code, what it means, and the errors that end with it."""

    code: int
    meaning: str
    causes: tuple[type[BaseException], ...] = ()


# The one table of exit statuses, in `sandbox --help` order (docs/api.md repeats it). An error
# ends with the status of its nearest class here: an EngineUnavailableError is a LaunchError
# too, but UnavailableError comes before SandboxError in its MRO. Rows without causes are
# returned by the commands themselves.
EXIT_STATUSES: tuple[ExitStatus, ...] = (
    ExitStatus(EXIT_OK, "success"),
    ExitStatus(EXIT_FAILURE, "declined or nothing to do (consent refused, no instance matched)"),
    ExitStatus(EXIT_USAGE, "bad input (malformed manifest, policy or bundle; bad argument); "
               "other errors", (SandboxError,)),
    ExitStatus(EXIT_UNAVAILABLE, "a needed host component or the container engine is unavailable",
               (UnavailableError,)),
    ExitStatus(EXIT_INTERRUPTED, "interrupted (Ctrl-C)", (KeyboardInterrupt,)),
)  # fmt: skip


def exit_code_for(exc: BaseException) -> int:
    """The status `exc` ends a command with: the row of its nearest class in EXIT_STATUSES."""
    mro = type(exc).__mro__
    rows = [(mro.index(c), s.code) for s in EXIT_STATUSES for c in s.causes if c in mro]
    if not rows:
        raise ValueError(f"no exit status for {type(exc).__name__}")
    return min(rows)[1]


def exit_status_epilog() -> str:
    """The exit status table as `sandbox --help` prints it under its commands."""
    # Rows fit one line each, so nothing is wrapped here: textwrap's import (5.7 ms measured
    # with -X importtime) would be on every `sandbox run`'s path, where build_parser runs.
    return "\n".join(
        [
            "exit status:",
            *(f"  {s.code:<4} {s.meaning}" for s in EXIT_STATUSES),
            "  `sandbox run` without --detach exits with the app's own status once it started.",
        ]
    )


@dataclass(frozen=True)
class Command:
    """One command word, its one-line help, and the module whose register() adds it."""

    name: str
    help: str
    module: str


# Start-up cost: only the chosen command's module is imported (a `sandbox run` must not pay for
# python-xlib, the bundle reader or the policy reviewer). To add a command: a row here, in the
# order of `sandbox --help`; tests/cli/test_commands.py checks each row against its module.
COMMANDS: tuple[Command, ...] = (
    Command("probe", "show what this host offers", "probe_cmd"),
    Command("manifest", "check a manifest or an image's manifest; print image labels",
            "manifest_cmd"),
    Command("attribute", "show which sandboxed app a host process belongs to", "attribute_cmd"),
    Command("plan", "show what an app would get on this host (the permission review)",
            "plan_cmd"),
    Command("override", "grant, revoke or reset a capability for one app (your layer)",
            "override_cmd"),
    Command("windows", "list X11 windows with the host pid and sandboxed app of each",
            "windows_cmd"),
    Command("run", "run an app sandboxed (asks for consent first)", "run_cmd"),
    Command("ps", "list running sandboxed apps with their host pids", "instances_cmd"),
    Command("stop", "stop every instance of APP, or one INSTANCE", "instances_cmd"),
    Command("gc", "remove what crashed launchers left behind (safe while apps run)",
            "instances_cmd"),
    Command("data", "list (or --purge) an app's saved data", "data_cmd"),
    Command("keygen", "write a new Ed25519 publisher key for signing bundles (`export --sign`)",
            "keygen_cmd"),
    Command("export", "write an installed app or a local image as a .sbx bundle file",
            "export_cmd"),
    Command("install", "review a .sbx bundle's permissions and install it (menu entry, icon)",
            "install_cmd"),
    Command("update",
            "update an installed app from a full, thin or delta file (previous version kept)",
            "update_cmd"),
    Command("rollback",
            "switch an installed app back to the version it had before its last update/rebase",
            "update_cmd"),
    Command("rebase", "put an installed app's own layers on a patched base image (no registry)",
            "update_cmd"),
    Command("list", "list installed apps", "apps_cmd"),
    Command("info", "an installed app: manifest, granted permissions, your overrides, data size",
            "apps_cmd"),
    Command("uninstall",
            "remove an installed app (menu entry, icon, image); saves stay unless --purge",
            "apps_cmd"),
)  # fmt: skip


def _command_word(argv: Sequence[str]) -> str | None:
    """The first argument that is not an option: the command (the top parser has no options
    taking a value, so nothing else can come first)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: the chosen command's module registers it fully; every other
    command is a help-only placeholder. argv=None builds every command (for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="sandbox",
        description=__doc__,
        epilog=exit_status_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if argv is None:
        wanted = {c.module for c in COMMANDS}
    else:
        word = _command_word(argv)
        wanted = {c.module for c in COMMANDS if c.name == word}
    for module in dict.fromkeys(c.module for c in COMMANDS if c.module in wanted):
        importlib.import_module(f"sandbox.cli.{module}").register(sub)
    for c in COMMANDS:
        if c.name not in sub.choices:
            sub.add_parser(c.name, help=c.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except SandboxError as exc:
        print(f"sandbox: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt as exc:
        return exit_code_for(exc)
    return code
