"""One schema for every output shard: clean and quarantine, with or without the language model.

Readers that take a folder of Parquet files as one table (Hugging Face ``datasets``, duckdb's
``read_parquet('OUT/*/*.parquet')``, ``pyarrow.dataset``) need every file to have the same columns.
So every shard carries, in this order: the document columns, every cheap detector's signals, the
suspicion score, the dedup and campaign columns, the language-model signals, the columns of context
detectors (nightly's drift), any other column a run produced, and the decision (``outcome``,
``reasons``, ``duplicate_of``). A signal that was not measured (detector disabled, ``--no-lm``, a document the
LM never saw) is null. Clean shards carry the decision too: ``outcome`` is ``kept``, ``reasons``
empty, ``duplicate_of`` null.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import pyarrow as pa

from poisonguard.core.schema import DECISION_FIELDS, DOCUMENT_SCHEMA
from poisonguard.filters import campaign, dedup, perplexity


@lru_cache(maxsize=1)
def _cheap_signal_fields() -> tuple[pa.Field, ...]:
    """The cheap detectors' columns, taken from the detectors themselves (scored on no rows), so a
    new column of a detector is in the schema without being listed twice."""
    from poisonguard.filters import registry
    from poisonguard.pipelines import policy
    from poisonguard.pipelines.config import PipelineConfig

    cfg = PipelineConfig()
    empty = DOCUMENT_SCHEMA.empty_table()
    fields: list[pa.Field] = []
    for detector in registry.in_stage("cheap"):
        dcfg = policy.section(cfg, detector).model_copy(update={"enabled": True})
        for column, values in detector.score(empty, dcfg).items():
            fields.append(pa.field(column, values.type))
    return tuple(fields)


def lm_signal_schema() -> pa.Schema:
    return pa.schema([(perplexity.PREFIX + n, t) for n, t in perplexity._COLUMNS.items()])


def decision_schema() -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in DECISION_FIELDS])


def signal_schema(context_fields: Sequence[pa.Field] = ()) -> pa.Schema:
    """Document columns and every signal column, whatever the config (no decision columns)."""
    return pa.schema(
        list(DOCUMENT_SCHEMA)
        + list(_cheap_signal_fields())
        + list(dedup.SIGNAL_SCHEMA)
        + list(campaign.SIGNAL_SCHEMA)
        + list(lm_signal_schema())
        + list(context_fields)
    )


def shard_schema(produced: pa.Schema | None = None, context_fields: Sequence[pa.Field] = ()) -> pa.Schema:
    """The schema of every clean and quarantine shard of a run.

    `produced` is what the run's chunks hold: a column it has that the fixed list lacks (a new
    detector) is kept, before the decision columns, so nothing measured is dropped."""
    fixed = signal_schema(context_fields)
    extra = [
        f for f in (produced or pa.schema([])) if f.name not in fixed.names and not f.name.startswith("_")
    ]
    decision = decision_schema()
    extra = [f for f in extra if f.name not in decision.names]
    return pa.schema(list(fixed) + extra + list(decision))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns: missing ones null, others cast, unknown ones dropped."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)
