"""The app bridge's fence: rule order, idempotent insertion, removal, and why it may be missing
(iptables itself is faked: these tests never touch the host's firewall)."""

from __future__ import annotations

import subprocess

import pytest

from sandbox.errors import LaunchError
from sandbox.host import netfilter

BR = "sbx0123456789ab"


def test_rules_accept_replies_and_dns_then_drop_host_and_inbound() -> None:
    rules = netfilter.rules(BR, "10.9.0.1")
    targets = [(r.chain, r.args[-1]) for r in rules]
    assert targets == [
        ("INPUT", "ACCEPT"),  # replies to what the host opened
        ("INPUT", "ACCEPT"),  # udp 53 on the gateway
        ("INPUT", "ACCEPT"),  # tcp 53 on the gateway
        ("INPUT", "DROP"),  # every other host service, on any host address
        ("FORWARD", "DROP"),  # no new connection into the app from outside its bridge
    ]
    assert all(netfilter.COMMENT in r.args for r in rules)
    assert [a for r in rules[1:3] for a in r.args if a in ("10.9.0.1", "53")] == [
        "10.9.0.1",
        "53",
    ] * 2
    assert len(netfilter.rules(BR, None)) == 3  # no gateway known: no DNS exception


class FakeTables:
    def __init__(self, fail_insert: bool = False) -> None:
        self.rules: dict[str, list[tuple[str, tuple[str, ...]]]] = {"iptables": [], "ip6tables": []}
        self.fail_insert = fail_insert

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        op, chain, rest = args[0], args[1] if len(args) > 1 else "", args[2:]
        table = self.rules[tool]
        ok = 0
        if op == "-C":
            ok = 0 if (chain, rest) in table else 1
        elif op == "-I":
            if self.fail_insert:
                return subprocess.CompletedProcess(args, 4, "", "Permission denied")
            table.insert(0, (chain, rest[1:]))
        elif op == "-D":
            ok = 0 if (chain, rest) in table else 1
            if ok == 0:
                table.remove((chain, rest))
        return subprocess.CompletedProcess(args, ok, "", "")


def test_install_is_idempotent_ordered_and_removal_clears_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeTables()
    monkeypatch.setattr(netfilter, "_run", fake.run)
    monkeypatch.setattr(netfilter.shutil, "which", lambda name: f"/usr/sbin/{name}")
    netfilter.install(BR, "10.9.0.1")
    netfilter.install(BR, "10.9.0.1")
    want = [(r.chain, r.args) for r in netfilter.rules(BR, "10.9.0.1")]
    assert fake.rules["iptables"] == want
    assert len(fake.rules["ip6tables"]) == 2  # the INPUT ones without the gateway's DNS
    netfilter.remove(BR, "10.9.0.1")
    assert fake.rules == {"iptables": [], "ip6tables": []}


def test_a_rule_that_cannot_go_in_fails_the_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netfilter, "_run", FakeTables(fail_insert=True).run)
    with pytest.raises(LaunchError, match=r"cannot fence .* Permission denied"):
        netfilter.install(BR, None)


def test_why_the_fence_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "rootless" in str(netfilter.firewall_problem(rootless=True, local=True))
    assert "TCP" in str(netfilter.firewall_problem(rootless=False, local=False))
    monkeypatch.setattr(netfilter.os, "geteuid", lambda: 1000)
    assert "needs root" in str(netfilter.firewall_problem(rootless=False, local=True))
    monkeypatch.setattr(netfilter.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netfilter.shutil, "which", lambda name: None)
    assert "not installed" in str(netfilter.firewall_problem(rootless=False, local=True))
    monkeypatch.setattr(netfilter.shutil, "which", lambda name: "/usr/sbin/iptables")
    assert netfilter.firewall_problem(rootless=False, local=True) is None
