"""The pure parts of rebase: history rows for a base, the app's own rows, the rewritten config,
and the lineage/platform rules."""

from __future__ import annotations

import pytest

from sandbox.distribution.bundle_format import BaseRef
from sandbox.distribution.rebase import (
    LABEL_BASE_DIFF_IDS,
    LABEL_BASE_ID,
    LABEL_BASE_LINEAGE,
    app_history,
    base_from_labels,
    base_history,
    check_new_base,
    rebased_config,
)
from sandbox.engine.adapter import HistoryEntry, ImageDetails
from sandbox.errors import BundleError


def _d(c: str) -> str:
    return "sha256:" + c * 64


def _details(layers: list[str], labels: dict[str, str] | None = None) -> ImageDetails:
    return ImageDetails(_d("9"), ("new:1",), 0, labels or {}, tuple(layers))


def test_base_history_uses_sizes_when_they_match_the_layers() -> None:
    rows = (HistoryEntry(0, "import", "", 10), HistoryEntry(1, "ENV x", "", 0))
    out = base_history(rows, 1, "b")
    assert [r.get("empty_layer", False) for r in out] == [False, True]
    # a zero-byte layer makes sizes ambiguous: one row per layer then
    out = base_history((HistoryEntry(0, "a", "", 0), HistoryEntry(1, "b", "", 5)), 3, "b")
    assert len(out) == 3 and not any(r.get("empty_layer") for r in out)


def test_app_history_cuts_after_the_base_layers_row() -> None:
    history = [{"c": 0}, {"c": 1, "empty_layer": True}, {"c": 2}, {"c": 3, "empty_layer": True}]
    assert app_history(history, 1, None) == history[1:]
    assert app_history(history, 1, 2) == history[2:]


def test_rebased_config_keeps_app_layers_and_labels_the_new_base() -> None:
    config = {
        "config": {"Labels": {"x": "1"}},
        "rootfs": {"type": "layers", "diff_ids": [_d("a"), _d("c")]},
        "history": [{"created_by": "old base"}, {"created_by": "app"}],
    }
    new = BaseRef("new:1", _d("9"), (_d("b"), _d("e")))
    out = rebased_config(
        config,
        app_layers=(_d("c"),),
        new_base=new,
        new_history=[{"created_by": "nb1"}, {"created_by": "nb2"}],
        own_history=[{"created_by": "app"}],
        new_lineage="debian-12",
    )
    assert out["rootfs"]["diff_ids"] == [_d("b"), _d("e"), _d("c")]
    assert [h["created_by"] for h in out["history"]] == ["nb1", "nb2", "app"]
    labels = out["config"]["Labels"]
    assert labels["x"] == "1" and labels[LABEL_BASE_LINEAGE] == "debian-12"
    assert base_from_labels(labels) == new
    assert config["rootfs"]["diff_ids"] == [_d("a"), _d("c")]  # the input is untouched
    with pytest.raises(BundleError, match="history has 0 app layer rows"):
        rebased_config(
            config,
            app_layers=(_d("c"),),
            new_base=new,
            new_history=[],
            own_history=[],
            new_lineage=None,
        )
    assert LABEL_BASE_ID in labels and LABEL_BASE_DIFF_IDS in labels


def test_new_base_rules() -> None:
    old = BaseRef("old:1", _d("1"), (_d("a"),))
    same_root = _details([_d("a"), _d("p")])
    check_new_base(old, {}, same_root, "linux/amd64", "linux/amd64", force=False)
    with pytest.raises(BundleError, match="linux/arm64, the app is linux/amd64"):
        check_new_base(old, {}, same_root, "linux/arm64", "linux/amd64", force=True)
    other = _details([_d("z")])
    with pytest.raises(BundleError, match="lineage"):
        check_new_base(old, {}, other, "linux/amd64", "linux/amd64", force=False)
    check_new_base(old, {}, other, "linux/amd64", "linux/amd64", force=True)
    labelled = _details([_d("z")], {LABEL_BASE_LINEAGE: "debian-12"})
    check_new_base(
        old, {LABEL_BASE_LINEAGE: "debian-12"}, labelled, "linux/amd64", "linux/amd64", force=False
    )
