"""The Python API: filter a corpus, score a table, plug the detectors into someone else's pipeline.

``filter_corpus`` is ``poisonguard filter`` from Python (same OUT, same report). ``score_table``
scores one ``pyarrow.Table`` in memory and returns it with every signal column, ``outcome``,
``reasons`` and ``duplicate_of`` (the shard schema of pipelines/shard_schema.py, then the input's
other columns). ``TableScorer`` is the same as a callable object, for Ray Data's ``map_batches``.
The datatrove step lives in pipelines/datatrove_step.py (extra ``poisonguard[datatrove]``).

Detectors that need the whole corpus: dedup (exact and near-duplicates, campaigns across domains),
the campaign detector (spun copies across domains), trigger mining (candidates that recur across
documents, report only) and nightly's drift (per-URL history). ``filter_corpus`` sees the whole
corpus and runs them all. ``score_table``, the Ray recipe and the datatrove step see one table or
batch at a time: dedup and campaigns run *within* that batch (``dedup=False`` turns both off),
trigger mining and drift do not run. Everything else is a
function of one document and gives the same result as a full run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from poisonguard.core.schema import DOCUMENT_SCHEMA, text_id
from poisonguard.pipelines.config import PipelineConfig, load_config
from poisonguard.pipelines.fields import FieldMap, InputConfig
from poisonguard.pipelines.shard_schema import conform, shard_schema

__all__ = ["filter_corpus", "score_table", "TableScorer", "make_config"]

# A config as the API takes it: a validated model, a YAML file, or a dict of sections to change.
ConfigLike: TypeAlias = PipelineConfig | str | Path | dict[str, Any] | None


def make_config(config: ConfigLike = None, **sections: Any) -> PipelineConfig:
    """A validated config: a PipelineConfig as is, a YAML path, or a dict of sections to change.

    Keyword arguments are sections to change too: ``make_config(dedup={"threshold": 0.7})``."""
    if isinstance(config, PipelineConfig) and not sections:
        return config
    if isinstance(config, PipelineConfig):
        return load_config(overrides={**config.model_dump(mode="json"), **sections})
    if isinstance(config, dict):
        return load_config(overrides={**config, **sections})
    return load_config(config, overrides=sections or None)


def filter_corpus(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    config: ConfigLike = None,
    *,
    use_lm: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    engine: str = "local",
    show_progress: bool = False,
    **run_options: Any,
) -> dict[str, Any]:
    """``poisonguard filter`` from Python; returns the report (also in OUT/report.json).

    `inputs` are files, folders or globs (JSONL, Parquet, WARC), local or URLs (s3://, gs://, hf://,
    see pipelines/storage.py), and so may `out` be; the field mapping is the config's
    ``input`` section. Raises readers.InputError / stages.OutputError for unusable inputs or OUT and
    readers.NoTextError when no record has the text field."""
    from poisonguard.pipelines.storage import run_with_storage

    cfg = make_config(config)
    paths = [str(inputs)] if isinstance(inputs, str | Path) else [str(p) for p in inputs]
    if engine == "ray":
        from poisonguard.pipelines.ray_engine import run_filter_ray as runner
    else:
        from poisonguard.pipelines.runner import run_filter as runner
    options = {"overwrite": overwrite, "resume": resume, "use_lm": use_lm, "show_progress": show_progress}
    return run_with_storage(runner, paths, str(out), cfg, **options, **run_options)


def _column_at(table: pa.Table, key: str | None) -> pa.Array | None:
    """The column at a dotted path (``metadata.url`` reads field `url` of struct column `metadata`)."""
    if not key:
        return None
    head, *rest = key.split(".")
    if head not in table.column_names:
        return None
    column: Any = table.column(head).combine_chunks()
    for part in rest:
        if not pa.types.is_struct(column.type) or column.type.get_field_index(part) < 0:
            return None
        column = pc.struct_field(column, part)
    return column


def _documents(table: pa.Table, fields: FieldMap) -> pa.Table:
    """The input as DOCUMENT_SCHEMA columns, through the field mapping."""
    text = _column_at(table, fields.text_key)
    if text is None:
        raise ValueError(
            f"the table has no text column {fields.text_key!r} (columns: {', '.join(table.column_names)})"
        )
    texts = [t if isinstance(t, str) else "" for t in text.to_pylist()]
    given = _column_at(table, fields.id_key)
    ids = [str(v) if v not in (None, "") else text_id(t) for v, t in zip(
        given.to_pylist() if given is not None else [None] * len(texts), texts, strict=True
    )]  # fmt: skip
    url = _column_at(table, fields.url_key)
    urls = [str(u) if u not in (None, "") else None for u in url.to_pylist()] if url is not None else None
    docs = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "text": pa.array(texts, pa.string()),
            "url": pa.array(urls or [None] * len(texts), pa.string()),
            "record": pa.array(range(1, len(texts) + 1), pa.int64()),
        }
    )
    if "hidden" in table.column_names:  # HTML spans a person does not see, if the caller has them
        docs = docs.append_column("hidden", table.column("hidden"))
    return conform(docs, DOCUMENT_SCHEMA)


def score_table(
    table: pa.Table,
    config: ConfigLike = None,
    *,
    use_lm: bool = False,
    dedup: bool = True,
    lm_scorer: Any = None,
) -> pa.Table:
    """Every signal, ``outcome``, ``reasons`` and ``duplicate_of`` for the rows of `table`.

    The text, id and URL are found through the config's ``input`` section (dotted paths into struct
    columns work). Rows keep their order; the input's columns other than the mapped ones follow the
    shard schema's columns. Dedup and campaigns see only this table (see the module docstring)."""
    from poisonguard.pipelines.runner import score_documents

    cfg = make_config(config)
    if not dedup:  # the corpus-level detectors: near-duplicates and spun campaigns
        off = {"enabled": False}
        sections = {
            "dedup": cfg.dedup.model_copy(update=off),
            "campaign": cfg.campaign.model_copy(update=off),
        }
        cfg = cfg.model_copy(update=sections)
    docs = _documents(table, FieldMap.from_config(cfg.input))
    decided = score_documents(docs, cfg, use_lm=use_lm, lm_scorer=lm_scorer)
    result = conform(decided, shard_schema(decided.schema))
    for name in table.column_names:
        if name not in result.column_names:
            result = result.append_column(name, table.column(name))
    return result


class TableScorer:
    """``score_table`` as a callable object: one config (and one loaded model) per Ray Data actor.

    ``dataset.map_batches(TableScorer, fn_constructor_kwargs={"config": {...}},
    batch_format="pyarrow", concurrency=4)``."""

    def __init__(
        self,
        config: ConfigLike = None,
        *,
        use_lm: bool = False,
        dedup: bool = True,
    ) -> None:
        self.cfg = make_config(config)
        self.use_lm = use_lm and self.cfg.perplexity.enabled
        self.dedup = dedup
        self._lm: Any = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.use_lm and self._lm is None:
            from poisonguard.filters.perplexity import PerplexityScorer

            self._lm = PerplexityScorer(self.cfg.perplexity)
        return score_table(batch, self.cfg, use_lm=self.use_lm, dedup=self.dedup, lm_scorer=self._lm)


def input_config(preset: str | None = None, **keys: str) -> dict[str, Any]:
    """The ``input`` config section as a dict, validated: ``make_config(input=input_config("dolma"))``."""
    return InputConfig(preset=preset, **keys).model_dump(exclude_none=True)
