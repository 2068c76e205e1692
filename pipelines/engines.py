"""Where a run's work happens: the local machine or a Ray cluster. Chosen once, validated before any
work starts (a bad name or an address without Ray fails before anything is crawled or read), then
used for both the crawl and the filter step of `filter`, `crawl` and `nightly`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENGINES = ("local", "ray")


class EngineError(ValueError):
    """An engine that cannot be used as asked: a usage error."""


@dataclass(frozen=True)
class Engine:
    """``name``: local or ray; ``address``: the Ray cluster to join (None: start a local one)."""

    name: str
    address: str | None = None

    @property
    def is_ray(self) -> bool:
        return self.name == "ray"

    def filter(self, inputs: list[str], out: Path, cfg: Any, **kwargs: Any) -> dict[str, Any]:
        """`runner.run_filter` or `ray_engine.run_filter_ray` with the same arguments."""
        if self.is_ray:
            from poisonguard.pipelines.ray_engine import run_filter_ray

            if kwargs.get("lm_scorer") is not None:
                raise EngineError(
                    "lm_scorer is for the local engine; the Ray engine loads the model in its actors"
                )
            kwargs.pop("lm_scorer", None)
            return run_filter_ray(inputs, out, cfg, address=self.address, **kwargs)
        from poisonguard.pipelines.runner import run_filter

        return run_filter(inputs, out, cfg, **kwargs)

    def crawl(
        self,
        seeds: list[str],
        out: Path,
        cfg: Any,
        *,
        resume: bool,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Crawl `seeds` into OUT/raw/ (`cfg`: the whole pipeline config); with Ray, ``run.workers``
        Scrapy processes, seeds partitioned by host (crawler/fanout.py; no `progress` events)."""
        if self.is_ray:
            from poisonguard.crawler.fanout import crawl_ray

            return crawl_ray(seeds, out, cfg.crawl, cfg.run.workers, resume=resume, address=self.address)
        from poisonguard.crawler.run import run_crawl

        return run_crawl(seeds, out, cfg.crawl, resume=resume, progress=progress)

    def crawl_started(self, raw: Path) -> bool:
        """Whether OUT/raw/ holds part of a crawl to resume (a killed fan-out may have left shards in
        its partitions before linking them into raw/)."""
        if any(raw.glob("part-*.parquet")):
            return True
        if self.is_ray:
            from poisonguard.crawler.fanout import PARTS_DIR

            return any(raw.glob(f"{PARTS_DIR}/*/raw/part-*.parquet"))
        return False


def engine_for(name: str, address: str | None = None) -> Engine:
    """The engine called `name`; raises EngineError for an unknown one or an address without Ray."""
    name = name.lower()
    if name not in ENGINES:
        raise EngineError(f"--engine must be {' or '.join(ENGINES)}, not {name!r}")
    if address and name != "ray":
        raise EngineError("--ray-address needs --engine ray")
    return Engine(name, address)
