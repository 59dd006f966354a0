"""`sandbox probe [--json]`: what this host offers, as a table or JSON; reports, decides nothing."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sandbox.policy.facts import (
    AudioFacts,
    CgroupFacts,
    DeviceFacts,
    DockerFacts,
    HostFacts,
    UserFacts,
    WaylandFacts,
    X11Facts,
    to_jsonable,
)
from sandbox.policy.gpu_diagnosis import GpuAccess, diagnose_gpu


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("probe", help="show what this host offers")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def _line(name: str, found: bool, what: str) -> str:
    return f"{name:<9} {'yes' if found else 'no ':<4} {what}"


def _gpu_line(facts: HostFacts) -> str:
    """What `gpu` would give here and, in plain words, why GL may not reach the GPU."""
    diagnosis = diagnose_gpu(facts)
    access = ", ".join(str(a) for a in diagnosis.access)
    text = f"{diagnosis.summary}; access {access}; GL {diagnosis.gl}"
    text += "".join(f"\n{'':<14} ! {p}" for p in diagnosis.problems)
    return _line("gpu", GpuAccess.NONE not in diagnosis.access, text)


def _docker_line(d: DockerFacts) -> str:
    what = (
        f"{d.engine} {d.version} (API {d.api_version}) at {d.endpoint} via {d.source}; "
        f"cgroup {d.cgroup_driver} v{d.cgroup_version}"
        f"{'; rootless' if d.rootless else ''}; runtimes {', '.join(d.runtimes) or '-'}"
        + ("" if d.network_fenced else f"; networks unfenced: {d.network_fence_problem}")
    )
    return _line("docker", d.available, what if d.available else str(d.reason))


def _x11_line(x: X11Facts) -> str:
    what = (
        f"{x.display} at {x.socket_path}; "
        f"SECURITY {'yes' if x.security_extension else 'NO'}, "
        f"X-Resource {'yes' if x.xres_extension else 'NO'}"
    )
    return _line("x11", x.available, what if x.available else str(x.reason))


def _wayland_line(w: WaylandFacts) -> str:
    return _line("wayland", w.available, f"{w.socket_path}" if w.available else str(w.reason))


def _audio_line(a: AudioFacts) -> str:
    what = (
        f"{a.server_name} {a.server_version} ({a.server}) at {a.socket_path}; "
        f"sink {a.default_sink}, source {a.default_source}"
    )
    return _line("audio", a.available, what if a.available else str(a.reason))


def _devices_line(dev: DeviceFacts) -> str:
    if not dev.available:
        return _line("devices", False, str(dev.reason))
    gpus = ", ".join(f"{g.node} ({g.vendor or g.vendor_id}, {g.driver})" for g in dev.gpus)
    nvidia = ", ".join(n.node for n in dev.nvidia.nodes) or "none"
    if dev.nvidia.driver_version:
        nvidia += f" (driver {dev.nvidia.driver_version})"
    webcams = ", ".join(f"{c.node} ({c.product})" for c in dev.webcams) or "none"
    gamepads = ", ".join(f"{g.node} ({g.name})" for g in dev.gamepads) or "none"
    what = f"GPUs: {gpus or 'none'}; NVIDIA: {nvidia}; webcams: {webcams}; gamepads: {gamepads}"
    if not dev.udev_properties:
        what += "; no udev properties (no udevd): webcams and gamepads cannot be recognised"
    return _line("devices", True, what)


def _cgroups_line(cg: CgroupFacts) -> str:
    parent = (
        "can create the sandbox parent"
        if cg.can_create_parent
        else f"cannot create the sandbox parent: {cg.parent_reason}"
    )
    what = f"{cg.layout}; controllers {', '.join(cg.controllers)}; {parent}"
    return _line("cgroups", cg.available, what if cg.available else str(cg.reason))


def _user_line(u: UserFacts) -> str:
    what = f"uid {u.uid} gid {u.gid} ({u.name}); runtime dir {u.runtime_dir}; data {u.data_home}"
    return _line("user", u.available, what if u.available else str(u.reason))


def render_table(facts: HostFacts) -> str:
    """The table `sandbox probe` prints: one row per resource, then the GPU diagnosis."""
    rows = [
        f"{'resource':<9} {'ok':<4} details",
        _docker_line(facts.docker),
        _x11_line(facts.x11),
        _wayland_line(facts.wayland),
        _audio_line(facts.audio),
        _devices_line(facts.devices),
        _gpu_line(facts),
        _cgroups_line(facts.cgroups),
        _user_line(facts.user),
    ]
    return "\n".join(rows)


def render_json(facts: HostFacts) -> str:
    """The `--json` document: one object keyed by resource, as documented in docs/probe.md."""
    return json.dumps(to_jsonable(facts), indent=2, sort_keys=False)


def run(args: argparse.Namespace) -> int:
    from sandbox.probes import probe_host

    facts = probe_host()
    if args.json:
        print(render_json(facts))
    else:
        print(render_table(facts))
    return 0
