"""Detectors: one module per detector, each a pure function over a batch of documents.

Every detector module defines three things:

``Config``
    A pydantic model (``extra="forbid"``) holding the detector's knobs; its defaults are the
    documented defaults and ``configs/default.yaml`` repeats them with comments.
``score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]``
    Measures. Reads the document columns (``id``, ``text``, ``url``, ``hidden`` ...) and returns
    signal columns named ``<detector>_<signal>``, one value per row, in row order. Never decides.
``flag(signals: pa.Table, cfg: Config) -> list[list[str]]``
    Decides from the signal columns alone (so a run can be re-decided with other thresholds without
    re-scoring): for every row, the list of quarantine reasons as ``detector:detail`` strings; an
    empty list means the detector has no objection.

Stateful detectors (dedup across the whole input, the language model) keep the same ``score`` /
``flag`` split but are driven by the runner, which gives them only the documents they need.
"""
