"""Unit tests of the CLI progress bar: each state drawn once, the last one always shown."""

from __future__ import annotations

import io

from sandbox.cli._progress import ProgressBar


def test_the_final_line_is_written_once() -> None:
    out = io.StringIO()
    bar = ProgressBar("loading", out)
    bar(50, 100)
    bar(100, 100)  # within the redraw interval: not drawn yet
    bar.finish()
    lines = out.getvalue().split("\r")
    assert sum("100%" in line for line in lines) == 1
    assert out.getvalue().endswith("\n")


def test_a_full_bar_reported_again_is_not_redrawn_at_finish() -> None:
    out = io.StringIO()
    bar = ProgressBar("verifying", out)
    bar(100, 100)  # first call draws at once
    bar.finish()
    assert out.getvalue().count("100%") == 1
    assert out.getvalue().count("\n") == 1


def test_finish_without_reports_writes_nothing() -> None:
    out = io.StringIO()
    ProgressBar("verifying", out).finish()
    assert out.getvalue() == ""
