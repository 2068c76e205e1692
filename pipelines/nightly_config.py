"""The nightly job's config (configs/nightly.yaml), its errors and the settings that must not change
between nights (config hash, MinHash settings)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from poisonguard.filters import drift as drift_detector
from poisonguard.pipelines.config import ConfigError, PipelineConfig, load_config, load_yaml

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class NightlyError(RuntimeError):
    """A run that cannot go on; ``code`` is the exit code (1 failed, 2 usage, 75 try later)."""

    code = 1


class NightlyUsageError(NightlyError):
    code = 2


class NightlyLocked(NightlyError):
    code = 75


# ---------------------------------------------------------------------------------------------
# Config (configs/nightly.yaml)


class CrawlSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seeds: list[str] = Field(default_factory=list, description="seed URLs crawled every run")
    seeds_file: str | None = Field(default=None, description="a file with one seed URL a line")
    sitemap: str | None = Field(default=None, description="a sitemap (URL or file) whose pages are seeds")


class Sources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[str] = Field(default_factory=list, description="files, folders or globs; new files are read")
    crawl: CrawlSource = CrawlSource()


class NightlyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: Sources = Sources()
    output: str = Field(
        default="nightly-out", description="ROOT: one folder per date, metrics.prom, the lock"
    )
    state: str | None = Field(default=None, description="SQLite state store; default ROOT/state.sqlite")
    pipeline: str | dict[str, Any] | None = Field(
        default=None, description="the filter config: a file path, or sections inline (as in default.yaml)"
    )
    use_lm: bool = Field(default=True, description="run the language-model stage")
    drift: drift_detector.Config = drift_detector.Config()


def load_nightly_config(path: str | Path | None) -> tuple[NightlyConfig, Path]:
    """The validated nightly config and the folder its relative paths are resolved against."""
    if path is None:
        return NightlyConfig(), Path.cwd()
    p = Path(path)
    try:
        data = load_yaml(p.read_text("utf-8"))
    except OSError as exc:
        raise NightlyUsageError(f"{p}: cannot read nightly config: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise NightlyUsageError(f"{p}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise NightlyUsageError(f"{p}: the top level must be a mapping")
    try:
        cfg = NightlyConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise NightlyUsageError(f"{p}: invalid nightly config: {problems}") from exc
    return cfg, p.resolve().parent


def pipeline_config(cfg: NightlyConfig, base: Path) -> PipelineConfig:
    try:
        if isinstance(cfg.pipeline, str):
            return load_config(resolve_path(cfg.pipeline, base))
        return load_config(None, cfg.pipeline or {})
    except ConfigError as exc:
        raise NightlyUsageError(str(exc)) from exc


def resolve_path(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def config_hash(pcfg: PipelineConfig, cfg: NightlyConfig) -> str:
    # Workers, the index's folder, its read cache and its merging change where and how fast, never
    # the outcomes.
    fast = {"index_dir", "index_cache_mb", "index_max_segments"}
    scoring = pcfg.model_dump(mode="json", exclude={"run": {"workers"}, "dedup": fast})
    blob = json.dumps(
        {"pipeline": scoring, "drift": cfg.drift.model_dump(mode="json"), "lm": cfg.use_lm}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def minhash_settings(pcfg: PipelineConfig) -> dict[str, Any]:
    d = pcfg.dedup
    return {
        "scheme": d.scheme,
        "num_perm": d.num_perm,
        "seed": d.seed,
        "shingle_words": d.shingle_words,
        "min_words": d.min_words,
    }


def parse_date(value: str | None) -> str:
    if value is None:
        return dt.datetime.now(dt.timezone.utc).date().isoformat()
    try:
        if not DATE_RE.match(value):
            raise ValueError
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise NightlyUsageError(f"--date {value!r}: expected a date as YYYY-MM-DD") from None
