"""The permission review: a LaunchPlan in plain words, grouped by risk, and as JSON; pure."""

from __future__ import annotations

from typing import Any

from sandbox.policy.facts import to_jsonable
from sandbox.policy.plan import GrantState, GrantStatus, LaunchPlan, NetworkMode
from sandbox.policy.vocabulary import Risk

_IN_PLAY = (GrantState.GRANTED, GrantState.UNAVAILABLE, GrantState.FALLBACK_UNUSED)
_RANK = {
    GrantState.GRANTED: 0,
    GrantState.UNAVAILABLE: 0,
    GrantState.FALLBACK_UNUSED: 0,
    GrantState.DENIED_BY_SITE: 1,
    GrantState.REVOKED_BY_USER: 1,
    GrantState.NOT_REQUESTED: 2,
}


def status_text(s: GrantStatus, plan: LaunchPlan | None = None) -> str:
    """What one permission means on this host, e.g. "Test Webcam at /dev/video0"."""
    match s.state:
        case GrantState.GRANTED:
            text = s.detail
        case GrantState.UNAVAILABLE:
            text = f"unavailable: {s.detail}"
        case GrantState.FALLBACK_UNUSED:
            text = f"not needed: {s.detail}"
        case GrantState.DENIED_BY_SITE:
            text = "denied by the site policy"
        case GrantState.REVOKED_BY_USER:
            text = "revoked by you"
        case GrantState.NOT_REQUESTED:
            text = "not requested"
    if s.implied_by is not None and s.state in _IN_PLAY:
        bigger = plan.status(s.implied_by) if plan else None
        text += f" (comes with {bigger.title if bigger else s.implied_by})"
    elif s.user_granted and s.state in _IN_PLAY:
        text += " (granted by you; the app does not ask for it)"
    elif s.conditional and s.state is not GrantState.FALLBACK_UNUSED and s.state in _IN_PLAY:
        text = f"as a fallback: {text}"
    return text


def _ordered(plan: LaunchPlan, risk: Risk) -> list[GrantStatus]:
    group = [s for s in plan.statuses if s.risk is risk]
    # what the app gets (or would get) first, then what is held back, then what it does not ask
    return sorted(group, key=lambda s: (_RANK[s.state], str(s.permission)))


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def limits_text(plan: LaunchPlan) -> str:
    lim = plan.limits
    return f"memory {_size(lim.memory_bytes)}, {lim.cpus:g} CPUs, {lim.pids} processes"


def baseline_text(plan: LaunchPlan) -> str:
    h = plan.hardening
    net = "no network" if h.network is NetworkMode.NONE else "its own network"
    return (
        f"runs as uid {h.user.uid}, no privileges, read-only system files, a private /tmp, "
        f"{net}, no access to the container engine or your files outside its own folders"
    )


def review_text(plan: LaunchPlan) -> str:
    """The review a user reads before the first launch (and after an update that asks more)."""
    app = plan.app
    lines = [f"{app.name} {app.version} ({app.id})", ""]
    for risk in sorted(Risk, reverse=True):
        group = _ordered(plan, risk)
        if not group:
            continue
        lines.append(f"{risk.label.capitalize()} risk")
        lines += [f"  {s.title} — {status_text(s, plan)}" for s in group]
    lines += ["", f"Limits: {limits_text(plan)}", f"Always: {baseline_text(plan)}"]
    lines += [f"Note: {n}" for n in plan.notes]
    return "\n".join(lines) + "\n"


def review_json(plan: LaunchPlan) -> dict[str, Any]:
    app = plan.app
    return {
        "app": {"id": app.id, "name": app.name, "version": app.version},
        "risks": [
            {
                "risk": risk.label,
                "permissions": [
                    {
                        "permission": str(s.permission),
                        "title": s.title,
                        "state": s.state.value,
                        "detail": s.detail,
                        "conditional": s.conditional,
                        "user_granted": s.user_granted,
                        "text": status_text(s, plan),
                    }
                    for s in _ordered(plan, risk)
                ],
            }
            for risk in sorted(Risk, reverse=True)
        ],
        "limits": to_jsonable(plan.limits),
        "notes": list(plan.notes),
    }


def plan_json(plan: LaunchPlan) -> dict[str, Any]:
    """The whole plan as JSON-ready values; permissions are spelled as in manifests."""
    out: dict[str, Any] = to_jsonable(plan)
    for raw, status in zip(out["statuses"], plan.statuses, strict=True):
        raw["permission"] = str(status.permission)
        raw["risk"] = status.risk.label
    for raw, request in zip(out["requests"], plan.requests, strict=True):
        raw["kind"] = type(request).__name__
    return out
