"""language detector (placeholder: being written)."""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    return {}


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    return [[] for _ in range(signals.num_rows)]
