"""A datatrove PipelineStep that scores documents with poisonguard's detectors (extra
``poisonguard[datatrove]``).

``PoisonGuardStep(mode="drop")`` lets only kept documents through; ``mode="annotate"`` lets every
document through with ``metadata["poisonguard_outcome"]``, ``metadata["poisonguard_reasons"]`` and
the signals named in `signals`. Documents are scored in batches of `batch_size`; dedup and
campaigns see one batch at a time (``dedup=False`` turns them off), trigger mining and drift do not
run (see pipelines/api.py). For corpus-wide dedup and campaigns, write the documents out and run
``poisonguard filter`` on the folder (``--preset datatrove``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from poisonguard.pipelines.api import ConfigLike, TableScorer

MODES = ("drop", "annotate")


class PoisonGuardStep(PipelineStep):
    name = "poisonguard"
    type = "🛡 - FILTER"

    def __init__(
        self,
        config: ConfigLike = None,
        *,
        mode: str = "drop",
        batch_size: int = 1000,
        use_lm: bool = False,
        dedup: bool = True,
        signals: tuple[str, ...] = (),
        url_key: str = "url",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.batch_size = batch_size
        self.signals = tuple(signals)
        self.url_key = url_key  # a key of Document.metadata
        self.scorer = TableScorer(config, use_lm=use_lm, dedup=dedup)

    def _table(self, docs: list[Document]) -> pa.Table:
        return pa.table(
            {
                "id": pa.array([d.id for d in docs], pa.string()),
                "text": pa.array([d.text for d in docs], pa.string()),
                "url": pa.array([_as_str(d.metadata.get(self.url_key)) for d in docs], pa.string()),
            }
        )

    def _decide(self, docs: list[Document]) -> Iterator[Document]:
        with self.track_time(unit="batch"):
            scored = self.scorer(self._table(docs))
        outcomes = scored.column("outcome").to_pylist()
        reasons = scored.column("reasons").to_pylist()
        extra = {name: scored.column(name).to_pylist() for name in self.signals}
        for i, doc in enumerate(docs):
            self.stat_update(outcomes[i])
            for reason in reasons[i]:
                self.stat_update(reason.split("(")[0])
            if self.mode == "drop" and outcomes[i] != "kept":
                continue
            doc.metadata["poisonguard_outcome"] = outcomes[i]
            doc.metadata["poisonguard_reasons"] = reasons[i]
            for name, values in extra.items():
                doc.metadata[name] = values[i]
            self.stat_update("forwarded")
            yield doc

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        batch: list[Document] = []
        for doc in data or ():
            self.update_doc_stats(doc)
            batch.append(doc)
            if len(batch) >= self.batch_size:
                yield from self._decide(batch)
                batch = []
        if batch:
            yield from self._decide(batch)


def _as_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
