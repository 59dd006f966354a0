"""Publisher pins: which key may change an installed app, decided from records alone; no I/O.

The rules (docs/security.md, "Publishers"): the first signed file an app is installed or
updated from pins app id -> key; from then on only files signed by that key, or carrying a
rotation chain through it, change the app, and the pin moves to the chain's last key (never
back). An app installed unsigned has no pin: unsigned files still update it, and the first
signed one pins it. A site policy may refuse unsigned files altogether.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sandbox.distribution.signing import Publisher
from sandbox.errors import BundleError


@dataclass(frozen=True)
class Pin:
    """What an install record holds about its publisher after a change was accepted."""

    key: str | None  # the pinned fingerprint; None: installed unsigned, nothing pinned
    lineage: tuple[str, ...] = ()  # keys the pin rotated from, oldest first, ending with `key`
    signed_by: str | None = None  # the key that signed this version's file (None: unsigned)


NO_PIN: Final = Pin(None)  # installed unsigned: nothing pinned


def describe(publisher: Publisher | None) -> str:
    """What a file carries, for messages."""
    if publisher is None:
        return "the file is unsigned"
    if len(publisher.lineage) > 1:
        chain = " -> ".join(publisher.lineage)
        return f"the file is signed by {publisher.fingerprint} (rotation chain {chain})"
    return f"the file is signed by {publisher.fingerprint}"


def first_pin(publisher: Publisher | None, *, require_signature: bool, source: str) -> Pin:
    """The pin of a fresh install; a site that requires signatures refuses an unsigned file."""
    if publisher is None:
        if require_signature:
            raise BundleError(
                source, "is unsigned, and the site policy requires signed files ([install])"
            )
        return NO_PIN
    return Pin(publisher.fingerprint, publisher.lineage, publisher.fingerprint)


def next_pin(
    app_id: str,
    current: Pin,
    publisher: Publisher | None,
    *,
    require_signature: bool,
    source: str,
) -> Pin:
    """The pin after a file of the installed `app_id` is accepted; BundleError when it is not
    signed by the pinned key (or through a rotation from it): nothing may change then."""
    if current.key is None:
        return first_pin(publisher, require_signature=require_signature, source=source)
    if publisher is None or current.key not in publisher.lineage:
        raise BundleError(
            source,
            f"refused: {app_id} is pinned to publisher key {current.key}, and "
            f"{describe(publisher)}; nothing was changed",
        )
    if publisher.fingerprint == current.key:
        return Pin(current.key, current.lineage or (current.key,), publisher.fingerprint)
    rest = publisher.lineage[publisher.lineage.index(current.key) + 1 :]
    lineage = (*(current.lineage or (current.key,)), *rest)
    return Pin(publisher.fingerprint, lineage, publisher.fingerprint)


def check_rollback(app_id: str, current: Pin, target: Pin, *, rebased_by_user: bool) -> None:
    """A rollback target must have been signed by the pinned key or one it rotated from (or be
    the user's own rebase); an unsigned version never comes back over a pin."""
    if current.key is None or rebased_by_user:
        return
    if target.signed_by is not None and target.signed_by in (current.lineage or (current.key,)):
        return
    carried = f"signed by {target.signed_by}" if target.signed_by else "unsigned"
    raise BundleError(
        app_id,
        f"refused: {app_id} is pinned to publisher key {current.key}, and the version to roll "
        f"back to was {carried}; nothing was changed",
    )


def review_line(vendor: str | None, publisher: Publisher | None, current: Pin = NO_PIN) -> str:
    """The publisher as the install review shows it; an unsigned file says so loudly."""
    named = f'"{vendor}"' if vendor else "no vendor named"
    if publisher is None:
        return (
            f"Publisher: UNSIGNED ({named}, unverified). Nobody vouches for this file; "
            "an app installed from it can be updated by anyone's file until a signed one pins it."
        )
    line = f"Publisher: {vendor or 'no vendor named'}, key {publisher.fingerprint}"
    if current.key is not None and current.key != publisher.fingerprint:
        line += f" (rotated from the pinned key {current.key}, signed by it)"
    elif current.key is None:
        line += " (this key will be pinned: later versions must be signed by it)"
    return line
