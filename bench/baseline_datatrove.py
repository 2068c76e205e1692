"""The peer baseline: datatrove's standard web-quality filters as a FineWeb-style pipeline sets them.

What the field catches today without poisonguard (issue #7 item 5): Gopher quality, Gopher
repetition, C4 quality (FineWeb's settings: paragraphs not split, citations and javascript lines
kept, no terminal-punctuation filter) and FineWeb quality, run on the same documents as poisonbench,
plus datatrove's English language filter when its fastText model is available offline.

    drop_reasons(docs) -> {doc id: [reasons]}   (an empty list: datatrove keeps the doc)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_NOTES: list[str] = []


def _filters() -> list[tuple[str, Any]]:
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )

    steps: list[tuple[str, Any]] = []
    try:
        lang = LanguageFilter(languages=["en"], language_threshold=0.65)
        _ = lang.model  # loads (or downloads) the fastText model now, so a failure is reported once
        steps.append(("language", lang))
    except Exception as exc:  # noqa: BLE001 - the model is fetched from the network; often unavailable
        _NOTES.append(f"datatrove LanguageFilter skipped: {type(exc).__name__}: {str(exc)[:120]}")
    steps += [
        ("gopher_repetition", GopherRepetitionFilter()),
        ("gopher_quality", GopherQualityFilter()),
        # FineWeb's C4 settings (datatrove examples/fineweb.py).
        ("c4", C4QualityFilter(filter_no_terminal_punct=False)),
        ("fineweb_quality", FineWebQualityFilter()),
    ]
    return steps


def drop_reasons(docs: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Run the filters in FineWeb's order; a doc stops at the first filter that drops it."""
    from datatrove.data import Document

    steps = _filters()
    out: dict[str, list[str]] = {}
    for d in docs:
        doc = Document(text=str(d["text"]), id=str(d["id"]), metadata={"url": d.get("url")})
        reasons: list[str] = []
        for name, step in steps:
            try:
                res = step.filter(doc)
            except Exception as exc:  # noqa: BLE001 - a filter crash is a drop in a real pipeline run
                reasons.append(f"{name}:error:{type(exc).__name__}")
                break
            keep, why = res if isinstance(res, tuple) else (res, "")
            if not keep:
                reasons.append(f"{name}:{why}" if why else name)
                break
        out[str(d["id"])] = reasons
    return out


def describe() -> str:
    """A line for the bench output: which filters ran and what was skipped."""
    text = ("datatrove baseline: LanguageFilter(en, 0.65) -> GopherRepetition -> GopherQuality -> "
            "C4Quality(FineWeb settings) -> FineWebQuality, defaults otherwise.")  # fmt: skip
    return text + ("\n" + "\n".join(_NOTES) if _NOTES else "")
