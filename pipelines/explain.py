"""`poisonguard explain OUT ID`: one document's outcome, reasons, evidence and signals, as plain text.

Reads the shards of a finished run (OUT/clean and OUT/quarantine) and its config (OUT/manifest.json)
for the thresholds; nothing else, so it works on any copy of OUT.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from poisonguard.filters import combiner
from poisonguard.pipelines.report_data import NOT_SIGNALS, run_config, shard_paths, threshold_for
from poisonguard.pipelines.report_text import document_spans, escape_visible

TEXT_CHARS = 300  # of the document's beginning
EVIDENCE_CHARS = 120  # of each located span
VALUE_CHARS = 160  # of a list or string signal
MAX_SUGGESTIONS = 3


def find_document(out: Path, doc_id: str) -> tuple[dict[str, Any], Path]:
    """The document's row and the shard that holds it.

    Raises FileNotFoundError when OUT has no shards and KeyError (whose message names OUT and the id,
    with ids that start with it, if any) when no shard holds the id.
    """
    paths = shard_paths(out, "clean") + shard_paths(out, "quarantine")
    if not paths:
        raise FileNotFoundError(
            f"{out}: no shards in clean/ or quarantine/; is this the output folder of a finished run?"
        )
    similar: list[str] = []
    for path in paths:
        pf = pq.ParquetFile(path)
        # Only the id column is read until the row is found, so a large run costs little.
        for group in range(pf.num_row_groups):
            ids = pf.read_row_group(group, columns=["id"]).column("id")
            hits = pc.indices_nonzero(pc.equal(ids, doc_id)).to_pylist()
            if hits:
                row = pf.read_row_group(group).take(pa.array(hits[:1])).to_pylist()[0]
                return row, path
            if len(similar) < MAX_SUGGESTIONS and doc_id:
                starts = pc.filter(ids, pc.starts_with(ids, doc_id)).to_pylist()
                similar.extend(starts[: MAX_SUGGESTIONS - len(similar)])
    hint = f"; ids that start with it: {', '.join(similar)}" if similar else ""
    raise KeyError(
        f"{out}: no document with id {doc_id!r} in clean/ or quarantine/ "
        f"({len(paths)} shard(s) searched){hint}"
    )


def _plain(value: Any, limit: int = VALUE_CHARS) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = escape_visible(text, html_out=False).replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + "…"


def _evidence(row: dict[str, Any]) -> list[str]:
    text = str(row.get("text") or "")
    lines = []
    for span in document_spans(row):
        piece = _plain(text[span.start : span.end], EVIDENCE_CHARS)
        lines.append(f"  {span.label} at chars {span.start}-{span.end}: {piece}")
    cp = row.get("perplexity_changepoint_char")
    if isinstance(cp, int):
        before = _plain(text[max(0, cp - 60) : cp], 80)
        after = _plain(text[cp : cp + 60], 80)
        lines.append(f"  perplexity change-point at char {cp}: …{before} ▼ {after}…")
    found = row.get("hidden_text_instructions") or ()
    instructions = {str(i.get("channel")): i.get("phrase") for i in found if i}
    for span in row.get("hidden") or ():
        if not span:
            continue
        channel = str(span.get("channel"))
        flag = f" (instruction: {_plain(instructions[channel], 80)})" if channel in instructions else ""
        lines.append(f"  hidden text [{channel}]{flag}: {_plain(span.get('text'), EVIDENCE_CHARS)}")
    return lines


def _combiner_lines(row: dict[str, Any], config: dict[str, Any]) -> list[str]:
    section = config.get("combiner") if isinstance(config, dict) else None
    if not isinstance(section, dict) or not section.get("enabled", True):
        return []
    try:
        cfg = combiner.Config.model_validate(section)
    except ValueError:  # a run made by another version: no combiner view rather than no explanation
        return []
    return combiner.explain_lines(row, cfg)


def format_document(row: dict[str, Any], where: str, config: dict[str, Any]) -> str:
    outcome = row.get("outcome") or "kept"
    reasons = row.get("reasons") or []
    lines = [
        f"document   {_plain(row.get('id'))}",
        f"found in   {where}",
        f"outcome    {outcome}",
        f"reasons    {', '.join(reasons) if reasons else '(none)'}",
    ]
    if row.get("duplicate_of"):
        lines.append(f"duplicate of {_plain(row.get('duplicate_of'))}")
    lines.append(f"url        {_plain(row.get('url'))}")
    lines.append(f"source     {_plain(row.get('source'))}, record {_plain(row.get('record'))}")
    text = str(row.get("text") or "")
    lines.append(
        f"text       {len(text):,} chars: {_plain(text[:TEXT_CHARS], TEXT_CHARS * 2)}"
        + ("…" if len(text) > TEXT_CHARS else "")
    )
    evidence = _evidence(row)
    if evidence:
        lines.append("evidence (invisible characters written as <U+XXXX>)")
        lines.extend(evidence)
    pushed = _combiner_lines(row, config)
    if pushed:
        lines.append("combiner (which signals pushed it: weight x standardised value, in log-odds)")
        lines.extend(pushed)
    signals = [k for k in row if k not in NOT_SIGNALS and not k.startswith("_")]
    if signals:
        lines.append("signals")
        width = max(len(k) for k in signals)
        for key in signals:
            value = row[key]
            threshold = threshold_for(key, config) if isinstance(value, int | float) else None
            note = f"   (threshold: {threshold[0]} {threshold[1]:g})" if threshold else ""
            lines.append(f"  {key.ljust(width)}  {_plain(value)}{note}")
    return "\n".join(lines)


def count_id(out: Path, doc_id: str) -> int:
    """How many documents of the run carry `doc_id` (ids are the user's and need not be unique)."""
    paths = shard_paths(out, "clean") + shard_paths(out, "quarantine")
    return sum(
        pc.sum(pc.equal(pq.read_table(p, columns=["id"]).column("id"), doc_id)).as_py() or 0 for p in paths
    )


def explain(out: Path, doc_id: str) -> str:
    """What happened to document `doc_id` in the finished run in `out`, for the terminal. When
    several documents share the id (each got its own outcome), the first is shown and the rest
    counted."""
    out = Path(out)
    row, path = find_document(out, doc_id)
    text = format_document(row, str(path.relative_to(out)), run_config(out))
    others = count_id(out, doc_id) - 1
    if others > 0:
        text += (
            f"\nnote       {others} more document(s) carry this id, each with its own outcome; "
            "this is the first in shard order (report.json: duplicate_ids)"
        )
    return text
