"""Tk install review window for `sandbox install --gui FILE`; UI only, no install logic.

UI only: the same library steps as the terminal path; Tk is imported only here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.distribution.bundle_reader import Progress
    from sandbox.distribution.install import InstallPreview
    from sandbox.engine.adapter import DockerAdapter

_PAD = 8
_RISK_COLOURS = {"high": "#b00020", "medium": "#8a5a00", "low": "#2e6b30"}


def window_title(preview: InstallPreview) -> str:
    app = preview.bundle.header.manifest.app
    verb = "Update" if preview.previous is not None else "Install"
    return f"{verb} {app.name}?"


def _error_window(tk: Any, message: str, code: int) -> int:
    root = tk.Tk()
    root.title("Cannot install")
    frame = tk.Frame(root, padx=_PAD * 2, pady=_PAD * 2)
    frame.pack(fill="both", expand=True)
    tk.Label(frame, text=message, wraplength=420, justify="left", fg="#b00020").pack(anchor="w")
    tk.Button(frame, text="Close", command=root.destroy).pack(anchor="e", pady=(_PAD, 0))
    root.bind("<Escape>", lambda _e: root.destroy())
    root.focus_force()
    root.mainloop()
    return code


def run_gui(args: argparse.Namespace, adapter: DockerAdapter, data_home: Path) -> int:
    """Verify, show the review, install on the user's word; 0 installed, 1 cancelled, else the
    exit status of the error (2 bad input, 3 engine unavailable: sandbox --help)."""
    import tkinter as tk

    from sandbox.distribution.install import preview_install
    from sandbox.distribution.update import commit_update
    from sandbox.errors import SandboxError

    try:
        preview = preview_install(
            args.file, adapter, data_home, site_policy=args.site_policy, overrides=args.overrides
        )
    except SandboxError as exc:
        from sandbox.cli import exit_code_for

        message = f"{args.file.name} cannot be installed:\n\n{exc}"
        return _error_window(tk, message, exit_code_for(exc))

    def commit(progress: Progress) -> None:
        # The update path: refuses while the installed version runs, keeps it for rollback.
        commit_update(preview, adapter, data_home, progress=progress)

    return _ReviewWindow(tk, preview, commit).run()


class _ReviewWindow:
    """The review and its Install/Cancel buttons; `run` returns the exit code."""

    def __init__(
        self, tk: Any, preview: InstallPreview, commit: Callable[[Progress], None]
    ) -> None:
        from tkinter import ttk

        from sandbox.distribution.install import InstallAction

        self._preview = preview
        self._commit = commit
        self._same = preview.action is InstallAction.SAME
        self.code = 1
        root = self._root = tk.Tk(className="sandbox-installer")
        root.title(window_title(preview))
        body = tk.Frame(root, padx=_PAD * 2, pady=_PAD * 2)
        body.pack(fill="both", expand=True)
        _add_heading(tk, body, preview)
        _add_review(tk, body, preview)
        self._status = tk.Label(body, text="")
        self._status.pack(anchor="w", pady=(_PAD, 0))
        self._bar = ttk.Progressbar(body, length=460, mode="determinate", maximum=1000)
        self._buttons = tk.Frame(body)
        self._buttons.pack(anchor="e", pady=(_PAD, 0))
        self._cancel_button = tk.Button(
            self._buttons, text="Cancel", command=self._cancel, default="active"
        )
        self._install_button = tk.Button(
            self._buttons,
            text="Install" if not self._same else "OK",
            underline=0,
            command=self._install,
        )
        self._cancel_button.pack(side="right", padx=(_PAD, 0))
        self._install_button.pack(side="right")
        root.bind("<Escape>", self._cancel)
        root.bind("<Alt-i>", self._install)
        root.protocol("WM_DELETE_WINDOW", self._cancel)

    def run(self) -> int:
        self._root.focus_force()
        self._root.mainloop()
        return self.code

    def _cancel(self, _event: object = None) -> None:
        self._root.destroy()

    def _install(self, _event: object = None) -> None:
        from sandbox.errors import SandboxError

        if self._same:
            self.code = 0
            self._root.destroy()
            return
        self._install_button.configure(state="disabled")
        self._cancel_button.configure(state="disabled")
        self._bar.pack(anchor="w", pady=(_PAD, 0), before=self._buttons)
        self._status.configure(text="Installing...")
        try:
            self._commit(self._progress)
        except SandboxError as exc:
            self._status.configure(text=f"Install failed: {exc}", fg="#b00020")
            self.code = 2
        else:
            app = self._preview.bundle.header.manifest.app
            self._status.configure(text=f"Installed. {app.name} is in your applications menu.")
            self.code = 0
        self._cancel_button.configure(text="Close", state="normal", command=self._root.destroy)

    def _progress(self, done: int, total: int) -> None:
        self._bar["value"] = 1000 * done / total if total else 1000
        self._root.update()


def _add_heading(tk: Any, body: Any, preview: InstallPreview) -> None:
    """The app's name, id, and whether this is the installed version or an update of it."""
    from sandbox.cli._install_flow import asks_for_more, publisher_line
    from sandbox.distribution.install import InstallAction

    app = preview.bundle.header.manifest.app
    tk.Label(body, text=f"{app.name} {app.version}", font=("TkDefaultFont", 14, "bold")).pack(
        anchor="w"
    )
    tk.Label(body, text=app.id, fg="#555555").pack(anchor="w")
    unsigned = preview.bundle.publisher is None
    tk.Label(
        body,
        text=publisher_line(preview),
        wraplength=460,
        justify="left",
        fg="#b00020" if unsigned else "#000000",
    ).pack(anchor="w", pady=_PAD)
    if preview.action is InstallAction.SAME:
        tk.Label(body, text="This version is already installed.").pack(anchor="w", pady=_PAD)
    if preview.previous is not None and preview.action is InstallAction.UPDATE:
        text = f"Update from {preview.previous.version}."
        if preview.new_permissions:
            text += " It asks for more: " + asks_for_more(preview)
        tk.Label(body, text=text, wraplength=460, justify="left").pack(anchor="w", pady=_PAD)


def _add_review(tk: Any, body: Any, preview: InstallPreview) -> None:
    """The requested permissions grouped by risk, then the limits and what always holds."""
    from sandbox.policy.review import baseline_text, limits_text, review_json

    review = review_json(preview.plan)
    for group in review["risks"]:
        shown = [p for p in group["permissions"] if p["state"] != "not-requested"]
        if not shown:
            continue
        tk.Label(
            body,
            text=f"{group['risk'].capitalize()} risk",
            fg=_RISK_COLOURS.get(group["risk"], "black"),
            font=("TkDefaultFont", 11, "bold"),
        ).pack(anchor="w", pady=(_PAD, 0))
        for p in shown:
            tk.Label(
                body, text=f"  {p['title']}: {p['text']}", wraplength=460, justify="left"
            ).pack(anchor="w")
    for line in (f"Limits: {limits_text(preview.plan)}", f"Always: {baseline_text(preview.plan)}"):
        tk.Label(body, text=line, wraplength=460, justify="left", fg="#555555").pack(
            anchor="w", pady=(_PAD, 0)
        )
