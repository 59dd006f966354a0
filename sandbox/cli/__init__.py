"""The command line: the only place that prints or exits. One module per command group."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sandbox.errors import SandboxError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad input: malformed manifest, unknown capability, bad path, hostile bundle


def build_parser() -> argparse.ArgumentParser:
    from sandbox.cli import (
        apps_cmd,
        attribute_cmd,
        data_cmd,
        export_cmd,
        install_cmd,
        instances_cmd,
        manifest_cmd,
        override_cmd,
        plan_cmd,
        probe_cmd,
        run_cmd,
        windows_cmd,
    )

    parser = argparse.ArgumentParser(prog="sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (
        probe_cmd,
        manifest_cmd,
        attribute_cmd,
        plan_cmd,
        override_cmd,
        windows_cmd,
        run_cmd,
        instances_cmd,
        data_cmd,
        export_cmd,
        install_cmd,
        apps_cmd,
    ):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except SandboxError as exc:
        print(f"sandbox: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code
