"""Configuration: one validated model built from configs/default.yaml plus a user file.

A user file only names what it changes; everything else keeps the default. Unknown keys and bad
values stop the run before any work, with the key's dotted path in the message.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from poisonguard.core import legal as legal_section
from poisonguard.crawler.config import CrawlConfig
from poisonguard.filters import combiner as combiner_policy
from poisonguard.filters import trigger_mining as trigger_mining_pass
from poisonguard.filters.registry import DETECTORS
from poisonguard.pipelines.fields import InputConfig
from poisonguard.pipelines.readers import DEFAULT_MAX_RECORD_BYTES

# More processes than this only queue behind each other on any machine this runs on; a typo such as
# 1000 would start a thousand interpreters.
MAX_WORKERS = 256


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_rows: int = Field(2000, ge=1, description="documents per work unit (also the resume unit)")
    shard_rows: int = Field(50_000, ge=1, description="rows per output shard")
    row_group_rows: int = Field(5_000, ge=1, description="rows per Parquet row group")
    workers: int = Field(
        1,
        ge=1,
        le=MAX_WORKERS,
        description="processes for the cheap detectors, and forked language-model workers on a CPU",
    )
    max_text_chars: int = Field(
        2_000_000, ge=1, description="longer texts are cut to this length before scoring"
    )
    max_record_bytes: int = Field(
        DEFAULT_MAX_RECORD_BYTES,
        ge=1024,
        description="a longer input record is listed as unreadable (too large), never held in memory",
    )


class PolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_chars: int = Field(0, ge=0, description="opt-in: documents shorter than this are filtered")
    drop_empty: bool = Field(True, description="empty or whitespace-only texts are filtered (policy:empty)")


class _Sections(BaseModel):
    """The sections every config has; one section per detector is added from the registry."""

    model_config = ConfigDict(extra="forbid")
    run: RunConfig = RunConfig()
    input: InputConfig = InputConfig()
    policy: PolicyConfig = PolicyConfig()
    # Not per-chunk detectors: a corpus pass run by the runner, and the policy's combiner.
    trigger_mining: trigger_mining_pass.Config = trigger_mining_pass.Config()
    combiner: combiner_policy.Config = combiner_policy.Config()
    # What reads as a legal notice, for both rules that count domains (dedup, campaign).
    legal: legal_section.Config = legal_section.Config()

    if TYPE_CHECKING:  # the detector sections (filters/registry.py) and `crawl`, made below

        def __getattr__(self, name: str) -> Any: ...


# The whole config: the sections above, then each detector's (named after it, in registry order),
# then the crawler's. Built from the registry, so a new detector needs no line here.
if TYPE_CHECKING:
    PipelineConfig = _Sections
else:
    PipelineConfig = create_model(
        "PipelineConfig",
        __base__=_Sections,
        __module__=__name__,
        **{d.name: (d.config, d.config()) for d in DETECTORS},
        crawl=(CrawlConfig, CrawlConfig()),
    )


def default_config_text() -> str:
    return importlib.resources.files("poisonguard.configs").joinpath("default.yaml").read_text("utf-8")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (the last one
    silently winning hides typos)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Parse YAML text (safe types only; duplicate keys refused)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def _read_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of sections")
    return data


def _bools_as_numbers(data: dict[str, Any], model: BaseModel, path: str = "") -> list[str]:
    """Keys given `true`/`false` where a number is expected (pydantic would read them as 1/0)."""
    found: list[str] = []
    for key, value in data.items():
        current = getattr(model, str(key), None)
        if isinstance(value, dict) and isinstance(current, BaseModel):
            found.extend(_bools_as_numbers(value, current, f"{path}{key}."))
        elif isinstance(value, bool) and isinstance(current, int | float) and not isinstance(current, bool):
            found.append(f"{path}{key}")
    return found


def _check_detectors(cfg: PipelineConfig, where: str) -> None:
    """Each detector's own checks over the whole config (filters/contract.py: check_config)."""
    for detector in DETECTORS:
        if detector.check_config is None:
            continue
        try:
            detector.check_config(cfg)
        except ValueError as exc:
            raise ConfigError(f"{where}: invalid config: {exc}") from exc


# Keys that moved to another section: an old config gets told where they went.
_MOVED = {
    (section, f"legal_{key}"): f"legal.{key}"
    for section in ("dedup", "campaign")
    for key in ("sentence_share", "address_density", "min_sentence_words")
}


def _moved_hint(loc: tuple[int | str, ...]) -> str:
    moved = _MOVED.get((str(loc[0]), str(loc[1]))) if len(loc) == 2 else None
    return f" (moved: use {moved})" if moved else ""


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults, then the user's file, then command-line overrides; validated as a whole."""
    data = _read_yaml(default_config_text(), "default.yaml")
    where = "default.yaml"
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read config: {exc.strerror or exc}") from exc
        data = _merge(data, _read_yaml(text, str(p)))
        where = str(p)
    if overrides:
        data = _merge(data, overrides)
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}{_moved_hint(err['loc'])}"
            for err in exc.errors()
        )
        raise ConfigError(f"{where}: invalid config: {problems}") from exc
    wrong = _bools_as_numbers(data, cfg)
    if wrong:
        raise ConfigError(f"{where}: invalid config: {', '.join(wrong)}: expected a number, not true/false")
    _check_detectors(cfg, where)
    return cfg
