"""After a night's filter: per-URL history and the kept documents' dedup entries, read from the
finished shards, and the dedup index of all nights so far."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from poisonguard.core import minhash
from poisonguard.core.schema import QUARANTINED
from poisonguard.filters import dedup, dedup_prior
from poisonguard.filters import drift as drift_detector
from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.state import UrlVersion

SIG_BATCH = 2000  # texts per signature batch when reading the finished shards


# ---------------------------------------------------------------------------------------------
# After the filter: history and index from the finished shards


def read_outcomes(out: Path, pcfg: PipelineConfig) -> tuple[list[UrlVersion], dict[str, Any]]:
    """Per-URL versions of tonight's documents and the kept documents' dedup entries."""
    limit = pcfg.run.max_text_chars
    dtype = minhash.signature_dtype(pcfg.dedup.scheme)
    best: dict[str, tuple[tuple[int, str, int], UrlVersion]] = {}
    kept: dict[str, list[Any]] = {"ids": [], "urls": [], "keys": [], "sigs": []}
    for folder in ("clean", "quarantine"):
        for shard in sorted((out / folder).glob("part-*.parquet")):
            pf = pq.ParquetFile(shard)
            cols = ["id", "text", "url", "source", "record"] + (["outcome"] if folder == "quarantine" else [])
            for batch in pf.iter_batches(batch_size=SIG_BATCH, columns=cols):
                table = pa.Table.from_batches([batch])
                ids = table.column("id").to_pylist()
                urls = table.column("url").to_pylist()
                texts = [t if len(t) <= limit else t[:limit] for t in table.column("text").to_pylist()]
                outcomes = (
                    table.column("outcome").to_pylist() if folder == "quarantine" else ["kept"] * len(ids)
                )
                sources = table.column("source").to_pylist()
                records = table.column("record").to_pylist()
                sigs = np.asarray(dedup.signatures(texts, pcfg.dedup)).astype(dtype, copy=False)
                drift_sigs = drift_detector.drift_signatures(texts, sigs, pcfg.dedup)  # what drift compares
                for i, url in enumerate(urls):
                    if not url:
                        continue
                    accepted = outcomes[i] != QUARANTINED
                    # One version per URL and night: an accepted one, else the last in input order.
                    rank = (int(accepted), sources[i] or "", records[i] if records[i] is not None else -1)
                    current = best.get(url)
                    if current is None or rank > current[0]:
                        sha = drift_detector.text_sha256(texts[i])
                        topic = drift_detector.topic_sketch(texts[i])
                        best[url] = (rank, UrlVersion(url, sha, drift_sigs[i], accepted, topic))
                if folder == "clean":
                    kept["ids"].extend(ids)
                    kept["urls"].extend(urls)
                    kept["keys"].extend(dedup.content_keys(texts))
                    kept["sigs"].append(sigs)
    versions = [best[u][1] for u in sorted(best)]
    return versions, kept


def open_prior(root: Path, name: str | None, pcfg: PipelineConfig) -> dedup_prior.PriorIndex:
    """The on-disk index of earlier nights named by a ledger row (None: empty). A snapshot of the
    former in-memory format (``*.npz``) is converted once, into a manifest of the same stem."""
    cfg, cache = pcfg.dedup, pcfg.dedup.index_cache_mb
    if name is None or not name.endswith(".npz"):
        return dedup_prior.PriorIndex(root, name, cfg, cache)
    converted = Path(name).stem + ".json"
    if not (root / converted).exists():
        docs = dedup_prior.Docs.from_entries(dedup.DedupIndex.load(root / name, cfg).entries())
        dedup_prior.PriorIndex(root, None, cfg, cache).append(docs, converted)
    return dedup_prior.PriorIndex(root, converted, cfg, cache)


def write_index(
    root: Path, base: str | None, kept: dict[str, Any], pcfg: PipelineConfig, target: str
) -> None:
    """Append the kept documents to the index named ``base`` as manifest ``target``, then drop the
    nights past ``dedup.index_keep_nights`` and merge segments past ``dedup.index_max_segments``
    (each step rewrites ``target`` atomically: a crash between them leaves a valid state)."""
    prior = open_prior(root, base, pcfg)
    sigs = np.concatenate(kept["sigs"]) if kept["sigs"] else np.zeros((0, pcfg.dedup.num_perm), np.uint32)
    dtype = minhash.signature_dtype(pcfg.dedup.scheme)
    docs = dedup_prior.Docs.build(kept["ids"], kept["urls"], kept["keys"], sigs.astype(dtype, copy=False))
    state = prior.append(docs, target).expire(pcfg.dedup.index_keep_nights, target)
    state.compact(pcfg.dedup.index_max_segments, target)


def load_index(root: Path, name: str | None, pcfg: PipelineConfig) -> dedup_prior.NightIndex | None:
    """The dedup index of earlier runs (None when dedup is off)."""
    if not pcfg.dedup.enabled:
        return None
    try:
        return dedup_prior.NightIndex(open_prior(root, name, pcfg))
    except (dedup_prior.PriorIndexError, ValueError) as exc:
        raise ValueError(f"cannot read dedup index: {exc}") from exc
