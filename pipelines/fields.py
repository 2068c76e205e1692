"""Field mapping: where a corpus keeps a document's text, id and URL.

Corpora written by other tools put these fields in different places: datatrove keeps the URL under
``metadata.url``, RedPajama-V2 keeps the text in ``raw_content``. A key is a dotted path into the
record (``metadata.url``); a preset names the keys of a known layout. The mapped fields leave the
record; whatever is left (the rest of ``metadata`` too) is kept as JSON in the ``meta`` column.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Layouts of the corpora people already have. `url` is None where the layout has none.
PRESETS: dict[str, dict[str, str | None]] = {
    # poisonguard's own and Hugging Face datasets' usual columns (C4, OSCAR exports, to_json/to_parquet)
    "default": {"text_key": "text", "id_key": "id", "url_key": "url"},
    "hf": {"text_key": "text", "id_key": "id", "url_key": "url"},
    # datatrove's JsonlWriter/ParquetWriter: {"text", "id", "media", "metadata": {"url", ...}}
    "datatrove": {"text_key": "text", "id_key": "id", "url_key": "metadata.url"},
    # FineWeb / FineWeb-Edu as published: datatrove documents with metadata flattened into columns
    "fineweb": {"text_key": "text", "id_key": "id", "url_key": "url"},
    # Dolma: {"id", "text", "source", "added", "created", "metadata": {"url", ...}}
    "dolma": {"text_key": "text", "id_key": "id", "url_key": "metadata.url"},
    # RedPajama-V2 documents: {"raw_content", "url", "digest", ...}
    "redpajama": {"text_key": "raw_content", "id_key": "digest", "url_key": "url"},
    # RedPajama-V1: {"text", "meta": {"url", ...}}
    "redpajama-v1": {"text_key": "text", "id_key": "meta.id", "url_key": "meta.url"},
}

_KEY_PATTERN = r"^[^.\s]+(\.[^.\s]+)*$"


class InputConfig(BaseModel):
    """The `input:` config section."""

    model_config = ConfigDict(extra="forbid")
    preset: str | None = Field(None, description=f"one of {', '.join(PRESETS)}; null = keys below")
    text_key: str | None = Field(None, pattern=_KEY_PATTERN, description="dotted path of the text")
    id_key: str | None = Field(None, pattern=_KEY_PATTERN, description="dotted path of the id")
    url_key: str | None = Field(None, pattern=_KEY_PATTERN, description="dotted path of the URL")

    @model_validator(mode="after")
    def _known_preset(self) -> InputConfig:
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; known: {', '.join(PRESETS)}")
        return self


class FieldMap:
    """Resolved keys (a preset, then the keys given one by one) and the functions that apply them."""

    def __init__(self, text_key: str = "text", id_key: str = "id", url_key: str | None = "url") -> None:
        self.text_key = text_key
        self.id_key = id_key
        self.url_key = url_key

    @classmethod
    def from_config(cls, cfg: InputConfig) -> FieldMap:
        keys = dict(PRESETS[cfg.preset or "default"])
        for name in ("text_key", "id_key", "url_key"):
            given = getattr(cfg, name)
            if given is not None:
                keys[name] = given
        return cls(keys["text_key"] or "text", keys["id_key"] or "id", keys["url_key"])

    @property
    def text_column(self) -> str:
        """The top-level column (Parquet) that holds the text."""
        return self.text_key.split(".")[0]

    def text(self, record: dict[str, Any]) -> Any:
        return get_path(record, self.text_key)

    def take(self, record: dict[str, Any]) -> tuple[Any, Any, Any]:
        """(text, id, url) removed from `record` (a mutable copy the reader owns)."""
        text = pop_path(record, self.text_key)
        given = pop_path(record, self.id_key)
        url = pop_path(record, self.url_key) if self.url_key else None
        return text, given, url

    def describe(self) -> str:
        return f"text {self.text_key!r}, id {self.id_key!r}, url {self.url_key!r}"


def get_path(record: dict[str, Any], key: str) -> Any:
    node: Any = record
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def pop_path(record: dict[str, Any], key: str) -> Any:
    """Remove and return the value at a dotted path; an emptied parent object goes too."""
    parts = key.split(".")
    parents: list[tuple[dict[str, Any], str]] = []
    node: Any = record
    for part in parts[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            return None
        parents.append((node, part))
        node = node[part]
    if not isinstance(node, dict):
        return None
    value = node.pop(parts[-1], None)
    for parent, part in reversed(parents):
        if parent[part]:
            break
        del parent[part]
    return value


def key_paths(record: dict[str, Any], limit: int = 40) -> list[str]:
    """The dotted paths of a record's fields (two levels), for messages that say what was there."""
    paths: list[str] = []
    for key, value in record.items():
        paths.append(str(key))
        if isinstance(value, dict):
            paths.extend(f"{key}.{sub}" for sub in value)
    return paths[:limit]
