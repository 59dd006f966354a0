"""The embedding API behind `sandbox.probe/plan/launch`: thin, typed wrappers; never prints."""

from __future__ import annotations

from pathlib import Path

from sandbox.policy.facts import HostFacts
from sandbox.runtime.session import Prepared, Session, Stdio
from sandbox.runtime.session import launch as _launch
from sandbox.runtime.session import prepare as _prepare


def probe() -> HostFacts:
    """Every host fact (engine, displays, audio, devices, cgroups, user), time-bounded."""
    from sandbox.probes import probe_host

    return probe_host()


def plan(
    target: str,
    *,
    engine_url: str | None = None,
    site_policy: Path | None = None,
    overrides: Path | None = None,
) -> Prepared:
    """Resolve APP-ID or IMAGE, probe and plan. Show `prepared.plan` to the user
    (sandbox.policy.review.review_text) and call launch() only after they agree."""
    return _prepare(target, engine_url=engine_url, site_policy=site_policy, overrides=overrides)


def launch(
    prepared: Prepared,
    *,
    args: tuple[str, ...] = (),
    stdio: Stdio | None = None,
    detach: bool = False,
) -> Session:
    """Start it. `session.wait()` / `await session.wait_async()` return the exit code and tear
    everything down; `session.stop()` ends the app early."""
    return _launch(prepared, args=args, stdio=stdio, detach=detach)
