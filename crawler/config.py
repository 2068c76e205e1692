"""Crawl settings (placeholder: being written)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CrawlConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
