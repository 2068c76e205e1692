"""The policy: one outcome per document, in a fixed precedence, from the registry's detectors."""

from __future__ import annotations

import pyarrow as pa

from poisonguard.core.schema import DUPLICATE, FILTERED, KEPT, QUARANTINED
from poisonguard.filters import registry
from poisonguard.pipelines import policy
from poisonguard.pipelines.config import load_config


def test_decide_precedence_quarantined_then_filtered_then_duplicate_then_kept() -> None:
    quarantine = [["b:x", "a:y", "a:y"], [], [], [], ["a:y"]]
    filtered = [["f:z"], ["f:z", "f:z"], [], [], []]
    duplicate_of = ["rep", "rep", "rep", None, "rep"]
    kind = ["near_duplicate", None, "exact_duplicate", None, None]
    outcomes, reasons = policy.decide(quarantine, filtered, duplicate_of, kind)
    assert outcomes == [QUARANTINED, FILTERED, DUPLICATE, KEPT, QUARANTINED]
    # Quarantine reasons first (sorted, once each), then the filter reasons a row also had.
    assert reasons[0] == ["a:y", "b:x", "f:z"]
    assert reasons[1] == ["f:z"]
    assert reasons[2] == ["dedup:exact_duplicate"]
    assert reasons[3] == []
    assert reasons[4] == ["a:y"]  # a quarantined duplicate is quarantined, not a duplicate
    assert policy.decide([[]], [[]], ["rep"], [None])[1] == [["dedup:near_duplicate"]]


def test_min_chars_filters_short_documents_only_when_set() -> None:
    table = pa.table({"text": ["four", "", "exactly8", "ünï"]})
    off = load_config()
    assert policy.too_short(table, off) == [[], [], [], []]
    on = load_config(overrides={"policy": {"min_chars": 4}})
    # Characters, not bytes: "ünï" is 3 characters (5 bytes) and too short; "four" is not.
    assert policy.too_short(table, on) == [[], ["policy:too_short(0<4)"], [], ["policy:too_short(3<4)"]]
    _, filtered = policy.cheap_reasons(table, on)
    assert filtered == [[], ["policy:empty", "policy:too_short(0<4)"], [], ["policy:too_short(3<4)"]]
    keep_empty = load_config(overrides={"policy": {"min_chars": 4, "drop_empty": False}})
    assert policy.cheap_reasons(table, keep_empty)[1] == policy.too_short(table, on)


def test_only_enabled_detectors_with_their_columns_present_give_reasons() -> None:
    cfg = load_config()
    table = pa.table({"text": ["x"], "unicode_tag_chars": pa.array([3], pa.int64())})
    quarantine, _ = policy.stage_reasons(table, cfg, "cheap")
    assert quarantine == [["unicode:tag_chars"]]
    off = load_config(overrides={"unicode": {"enabled": False}})
    assert policy.stage_reasons(table, off, "cheap")[0] == [[]]
    # The LM's detector says nothing about rows it never scored (no columns, or nulls).
    assert policy.lm_reasons(table, cfg) == [[]]


def test_config_has_one_section_per_registered_detector() -> None:
    cfg = load_config()
    for detector in registry.DETECTORS:
        section = policy.section(cfg, detector)
        assert isinstance(section, detector.config) and section.enabled
    stages = {d.stage for d in registry.DETECTORS}
    assert stages == {"cheap", "corpus", "lm"}
