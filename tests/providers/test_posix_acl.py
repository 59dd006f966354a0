"""POSIX ACL codec and edits: a granted uid never changes anyone else's effective rights."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sandbox.providers import posix_acl
from sandbox.providers.posix_acl import AclEntry, Tag

U = 0xFFFFFFFF


def effective(entries: tuple[AclEntry, ...]) -> dict[tuple[Tag, int], int]:
    """What each entry really allows (named and group entries are limited by the mask)."""
    mask = next((e.perm for e in entries if e.tag == Tag.MASK), 7)
    out: dict[tuple[Tag, int], int] = {}
    for e in entries:
        if e.tag == Tag.MASK:
            continue
        limited = e.tag in (Tag.USER, Tag.GROUP, Tag.GROUP_OBJ)
        out[(e.tag, e.id)] = e.perm & mask if limited else e.perm
    return out


acls = st.builds(
    lambda mode, users, groups, mask: (
        posix_acl._with_mask(
            [
                *posix_acl.from_mode(mode),
                *(AclEntry(Tag.USER, u, p) for u, p in users.items()),
                *(AclEntry(Tag.GROUP, g, p) for g, p in groups.items()),
            ]
        )
        if mask is None
        else tuple(
            sorted(
                [
                    *posix_acl.from_mode(mode),
                    *(AclEntry(Tag.USER, u, p) for u, p in users.items()),
                    *(AclEntry(Tag.GROUP, g, p) for g, p in groups.items()),
                    AclEntry(Tag.MASK, U, mask),
                ]
            )
        )
    ),
    st.integers(0, 0o777),
    st.dictionaries(st.integers(0, 70000), st.integers(0, 7), max_size=3),
    st.dictionaries(st.integers(0, 70000), st.integers(0, 7), max_size=2),
    st.one_of(st.none(), st.integers(0, 7)),
)


@given(acls)
def test_round_trip(entries: tuple[AclEntry, ...]) -> None:
    assert posix_acl.decode(posix_acl.encode(entries)) == tuple(sorted(entries))


@given(acls, st.integers(0, 70000))
def test_grant_keeps_others_effective_rights(entries: tuple[AclEntry, ...], uid: int) -> None:
    before = effective(entries)
    after = effective(posix_acl.grant_user(entries, uid, 6))
    assert after.pop((Tag.USER, uid)) == 6
    before.pop((Tag.USER, uid), None)
    assert after == before


def test_grant_then_revoke_on_a_plain_mode_is_the_plain_mode() -> None:
    plain = posix_acl.from_mode(0o755)
    granted = posix_acl.grant_user(plain, 1000, 6)
    assert posix_acl.user_perm(granted, 1000) == 6
    assert any(e.tag == Tag.MASK for e in granted)
    assert posix_acl.revoke_user(granted, 1000) == plain


def test_kernel_byte_layout() -> None:
    blob = posix_acl.encode(posix_acl.grant_user(posix_acl.from_mode(0o750), 1000, 6))
    # v2 header, then sorted (tag, perm, id) LE: user_obj, user:1000, group_obj, mask, other
    assert blob.hex() == (
        "0200000001000700ffffffff02000600e803000004000500ffffffff10000700ffffffff20000000ffffffff"
    )
