"""Tk install review window for `sandbox install --gui FILE`; UI only, no install logic.

UI only: the same library steps as the terminal path; Tk is imported only here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.distribution.install import InstallPreview
    from sandbox.engine.adapter import DockerAdapter

_PAD = 8
_RISK_COLOURS = {"high": "#b00020", "medium": "#8a5a00", "low": "#2e6b30"}


def window_title(preview: InstallPreview) -> str:
    app = preview.bundle.header.manifest.app
    verb = "Update" if preview.previous is not None else "Install"
    return f"{verb} {app.name}?"


def _error_window(tk: Any, message: str) -> int:
    root = tk.Tk()
    root.title("Cannot install")
    frame = tk.Frame(root, padx=_PAD * 2, pady=_PAD * 2)
    frame.pack(fill="both", expand=True)
    tk.Label(frame, text=message, wraplength=420, justify="left", fg="#b00020").pack(anchor="w")
    tk.Button(frame, text="Close", command=root.destroy).pack(anchor="e", pady=(_PAD, 0))
    root.bind("<Escape>", lambda _e: root.destroy())
    root.focus_force()
    root.mainloop()
    return 2


def run_gui(args: argparse.Namespace, adapter: DockerAdapter, data_home: Path) -> int:
    """Verify, show the review, install on the user's word; 0 installed, 1 cancelled, 2 bad."""
    import tkinter as tk
    from tkinter import ttk

    from sandbox.distribution.install import InstallAction, preview_install
    from sandbox.distribution.update import commit_update
    from sandbox.errors import SandboxError
    from sandbox.policy.review import baseline_text, limits_text, review_json

    try:
        preview = preview_install(
            args.file, adapter, data_home, site_policy=args.site_policy, overrides=args.overrides
        )
    except SandboxError as exc:
        return _error_window(tk, f"{args.file.name} cannot be installed:\n\n{exc}")
    app = preview.bundle.header.manifest.app
    root = tk.Tk(className="sandbox-installer")
    root.title(window_title(preview))
    outcome = {"code": 1}
    body = tk.Frame(root, padx=_PAD * 2, pady=_PAD * 2)
    body.pack(fill="both", expand=True)
    tk.Label(body, text=f"{app.name} {app.version}", font=("TkDefaultFont", 14, "bold")).pack(
        anchor="w"
    )
    tk.Label(body, text=app.id, fg="#555555").pack(anchor="w")
    if preview.action is InstallAction.SAME:
        tk.Label(body, text="This version is already installed.").pack(anchor="w", pady=_PAD)
    if preview.previous is not None and preview.action is InstallAction.UPDATE:
        text = f"Update from {preview.previous.version}."
        if preview.new_permissions:
            text += " It asks for more: " + ", ".join(str(p) for p in preview.new_permissions)
        tk.Label(body, text=text, wraplength=460, justify="left").pack(anchor="w", pady=_PAD)
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
    status = tk.Label(body, text="")
    status.pack(anchor="w", pady=(_PAD, 0))
    bar = ttk.Progressbar(body, length=460, mode="determinate", maximum=1000)
    buttons = tk.Frame(body)
    buttons.pack(anchor="e", pady=(_PAD, 0))

    def cancel(_event: object = None) -> None:
        root.destroy()

    def install(_event: object = None) -> None:
        if preview.action is InstallAction.SAME:
            outcome["code"] = 0
            root.destroy()
            return
        install_button.configure(state="disabled")
        cancel_button.configure(state="disabled")
        bar.pack(anchor="w", pady=(_PAD, 0), before=buttons)
        status.configure(text="Installing...")

        def progress(done: int, total: int) -> None:
            bar["value"] = 1000 * done / total if total else 1000
            root.update()

        try:
            # The update path: refuses while the installed version runs, keeps it for rollback.
            commit_update(preview, adapter, data_home, progress=progress)
        except SandboxError as exc:
            status.configure(text=f"Install failed: {exc}", fg="#b00020")
            outcome["code"] = 2
        else:
            status.configure(text=f"Installed. {app.name} is in your applications menu.")
            outcome["code"] = 0
        cancel_button.configure(text="Close", state="normal", command=root.destroy)

    cancel_button = tk.Button(buttons, text="Cancel", command=cancel, default="active")
    install_button = tk.Button(
        buttons,
        text="Install" if preview.action is not InstallAction.SAME else "OK",
        underline=0,
        command=install,
    )
    cancel_button.pack(side="right", padx=(_PAD, 0))
    install_button.pack(side="right")
    root.bind("<Escape>", cancel)
    root.bind("<Alt-i>", install)
    root.protocol("WM_DELETE_WINDOW", cancel)
    root.focus_force()
    root.mainloop()
    return outcome["code"]
