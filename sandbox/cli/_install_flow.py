"""The terminal install and update flow: progress -> preview -> consent -> commit; CLI only."""

# `sandbox install` and `sandbox update` differ in how they verify (an update names the
# installed app), what they ask and what they report; the steps between are these, once.

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sandbox.cli._progress import ProgressBar
from sandbox.distribution.bundle_reader import Progress
from sandbox.distribution.install import InstallAction, InstallPreview, InstallResult

T = TypeVar("T")


def ask(question: str, default: bool = False) -> bool:
    """A yes/no question on stderr; end of input is no."""
    sys.stderr.write(f"{question} [{'Y/n' if default else 'y/N'}] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer:
        return False  # EOF: no one agreed
    text = answer.strip().lower()
    return default if not text else text in ("y", "yes")


def agreed(yes: bool, question: str, cancelled: str) -> bool:
    """`--yes`, or the user's word; a refusal says what was left as it was."""
    if yes or ask(question):
        return True
    print(cancelled)
    return False


def asks_for_more(preview: InstallPreview) -> str:
    """The permissions an update asks beyond the installed version, for a sentence."""
    return ", ".join(str(p) for p in preview.new_permissions)


def publisher_line(preview: InstallPreview) -> str:
    """Who signed the file, for the review (vendor from the manifest + key fingerprint)."""
    from sandbox.distribution.publishers import NO_PIN, review_line

    previous = preview.previous.pin if preview.previous is not None else NO_PIN
    vendor = preview.bundle.header.manifest.app.vendor
    return review_line(vendor, preview.bundle.publisher, previous)


def with_progress(label: str, step: Callable[[Progress], T]) -> T:
    """Run `step` with a progress bar that ends its line whatever happens."""
    bar = ProgressBar(label)
    try:
        return step(bar)
    finally:
        bar.finish()


@dataclass(frozen=True)
class InstallFlow:
    """The steps one command fills in; `consent` returns the preview to commit, None: declined."""

    verify: Callable[[Progress], InstallPreview]
    consent: Callable[[InstallPreview], InstallPreview | None]
    commit: Callable[[InstallPreview, Progress], InstallResult]
    report: Callable[[InstallPreview, InstallResult], None]


def run_flow(flow: InstallFlow) -> int:
    """Verify, stop when this very image is installed, ask, load, report; the exit code."""
    preview = with_progress("verifying", flow.verify)
    if preview.action is InstallAction.SAME:
        app = preview.bundle.header.manifest.app
        print(f"{app.id} {app.version} is already installed; nothing to do")
        return 0
    agreed_preview = flow.consent(preview)
    if agreed_preview is None:
        return 1
    result = with_progress("loading", lambda bar: flow.commit(agreed_preview, bar))
    flow.report(agreed_preview, result)
    return 0
