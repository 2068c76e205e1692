"""Grouping texts by size, so that vectorised detectors pay their per-call cost once per group."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def byte_groups(
    texts: Sequence[str], budget: int, alone: Callable[[str], bool] | None = None
) -> list[list[int]]:
    """Row indices in consecutive groups of about `budget` characters each (a text counts its length
    plus one, for the separator it is joined with). Texts for which `alone` is true are in no group:
    the caller handles them one by one. The group a text closes may exceed `budget`."""
    groups: list[list[int]] = []
    group: list[int] = []
    size = 0
    for i, text in enumerate(texts):
        if alone is not None and alone(text):
            continue
        group.append(i)
        size += len(text) + 1
        if size >= budget:
            groups.append(group)
            group, size = [], 0
    if group:
        groups.append(group)
    return groups


def byte_ranges(texts: Sequence[str], budget: int) -> list[tuple[int, int]]:
    """:func:`byte_groups` of every text, as ``[lo, hi)`` row ranges."""
    return [(group[0], group[-1] + 1) for group in byte_groups(texts, budget)]
