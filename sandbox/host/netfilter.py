"""The host firewall rules that fence an app network's bridge (iptables); no engine, no policy.

The engine's bridge NATs the app to the outside, but the host itself answers on the bridge's
gateway (and on every other host address reached through it), and a plain bridge forwards
what other containers send in. Per app bridge, inserted first in their chains:

    INPUT   -i BR -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT   replies to the host
    INPUT   -i BR -d GW -p udp --dport 53 -j ACCEPT     the network's resolver, where the
    INPUT   -i BR -d GW -p tcp --dport 53 -j ACCEPT     engine puts one (aardvark, dnsname)
    INPUT   -i BR -j DROP                               no host service: gateway, LAN address
    FORWARD -o BR ! -i BR -m conntrack --ctstate NEW -j DROP   no connection into the app

(ip6tables gets the INPUT rules too where it works: a bridge has a link-local address.)
This needs CAP_NET_ADMIN in the host's network namespace: `firewall_problem` says, without
running anything, why the launcher cannot install them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass

from sandbox.errors import LaunchError
from sandbox.host.names import check_app_id

IPTABLES = "iptables"
IP6TABLES = "ip6tables"
COMMENT = "sandbox app network"
TIMEOUT_S = 5.0
BRIDGE_PREFIX = "sbx"
BRIDGE_HASH_LEN = 12


def app_bridge_name(app_id: str) -> str:
    """The Linux bridge of the app's network: `sbx` + 12 hex of the id's sha256 (IFNAMSIZ leaves
    15 characters), so the rules can name the bridge before the engine creates it."""
    digest = hashlib.sha256(check_app_id(app_id).encode()).hexdigest()
    return BRIDGE_PREFIX + digest[:BRIDGE_HASH_LEN]


@dataclass(frozen=True)
class Rule:
    chain: str
    args: tuple[str, ...]  # the match and target, without the chain


def rules(bridge: str, gateway: str | None) -> tuple[Rule, ...]:
    """The rules for one bridge, in the order they must end up at the head of their chains."""
    tag = ("-m", "comment", "--comment", COMMENT)
    state = ("-m", "conntrack", "--ctstate")
    dns = tuple(
        Rule("INPUT", ("-i", bridge, "-d", gw, "-p", p, "--dport", "53", *tag, "-j", "ACCEPT"))
        for gw in ((gateway,) if gateway else ())
        for p in ("udp", "tcp")
    )
    return (
        Rule("INPUT", ("-i", bridge, *state, "ESTABLISHED,RELATED", *tag, "-j", "ACCEPT")),
        *dns,
        Rule("INPUT", ("-i", bridge, *tag, "-j", "DROP")),
        Rule("FORWARD", ("-o", bridge, "!", "-i", bridge, *state, "NEW", *tag, "-j", "DROP")),
    )


def _v6_rules(bridge: str) -> tuple[Rule, ...]:
    return tuple(r for r in rules(bridge, None) if r.chain == "INPUT")


def firewall_problem(*, rootless: bool, local: bool) -> str | None:
    """None when the launcher can fence app bridges here, else why not (for the review)."""
    if rootless:
        return "the engine is rootless: its bridges live in a namespace the launcher cannot fence"
    if not local:
        return "the engine is not on this computer (a TCP endpoint)"
    if os.geteuid() != 0:
        return "installing firewall rules needs root; the launcher runs as a user"
    if shutil.which(IPTABLES) is None:
        return f"{IPTABLES} is not installed"
    return None


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [tool, "-w", *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LaunchError(f"{tool} {' '.join(args)}: {exc}") from exc


def _ensure(tool: str, wanted: tuple[Rule, ...]) -> None:
    # Inserted last first at position 1, so they end up in `wanted`'s order; a rule already
    # there (another launch of the app, a rerun) is left as it is.
    for rule in reversed(wanted):
        if _run(tool, "-C", rule.chain, *rule.args).returncode == 0:
            continue
        done = _run(tool, "-I", rule.chain, "1", *rule.args)
        if done.returncode != 0:
            raise LaunchError(
                f"cannot fence the app network's bridge: {tool} -I {rule.chain}: "
                f"{done.stderr.strip()}"
            )


def _ip6tables_works() -> bool:
    return shutil.which(IP6TABLES) is not None and _run(IP6TABLES, "-S", "INPUT").returncode == 0


def install(bridge: str, gateway: str | None) -> None:
    """Fence `bridge` (idempotent); LaunchError when a rule cannot be inserted."""
    _ensure(IPTABLES, rules(bridge, gateway))
    if _ip6tables_works():
        _ensure(IP6TABLES, _v6_rules(bridge))


def _delete_all(tool: str, wanted: tuple[Rule, ...]) -> None:
    for rule in wanted:
        for _ in range(8):  # a rule inserted twice by hand is deleted twice; bounded
            if _run(tool, "-D", rule.chain, *rule.args).returncode != 0:
                break


def remove(bridge: str, gateway: str | None) -> None:
    """Remove the bridge's rules; absent ones are fine."""
    _delete_all(IPTABLES, rules(bridge, gateway))
    if _ip6tables_works():
        _delete_all(IP6TABLES, _v6_rules(bridge))
