"""The command line, the only place that prints or exits; command logic stays in *_cmd modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from sandbox.errors import SandboxError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad input: malformed manifest, unknown capability, bad path, hostile bundle


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
    parser = argparse.ArgumentParser(prog="sandbox", description=__doc__)
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
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code
