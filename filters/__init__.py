"""Detectors: one module per detector, each a pure function over a batch of documents.

Every detector module defines a ``Config`` (a ``contract.DetectorConfig``: unknown keys are errors,
``enabled`` switches it off), ``score(batch, cfg) -> {column: array}`` (measures; columns named
``<detector>_<signal>``), ``flag(signals, cfg) -> reasons per row`` (decides from the signal columns
alone, so a run can be re-decided without scoring again), optionally ``filter_reasons``, and a
``DETECTOR`` entry (``contract.Spec``) that declares each signal column with the knob that decides
on it. ``registry.DETECTORS`` lists the detectors the pipeline runs; docs/DETECTORS.md says how to
add one.

Detectors that need more than one document (dedup across the whole input, the language model on
what is still undecided) keep the same ``score``/``flag`` split; the pipeline's stages give them the
documents they need.
"""
