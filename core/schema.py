"""The document schema shared by readers, detectors and writers (docs/DESIGN.md "Contracts")."""

from __future__ import annotations

import hashlib

import pyarrow as pa

KEPT = "kept"
DUPLICATE = "duplicate"
QUARANTINED = "quarantined"
FILTERED = "filtered"
OUTCOMES = (KEPT, DUPLICATE, QUARANTINED, FILTERED)

HIDDEN_SPAN = pa.struct([("channel", pa.string()), ("text", pa.string())])

# Columns every document carries, whatever it came from. `hidden` holds text a person would not see
# (only HTML input has it); `meta` holds every other input field as a JSON object.
DOCUMENT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("url", pa.string()),
        ("source", pa.string()),
        ("record", pa.int64()),
        ("meta", pa.string()),
        ("hidden", pa.list_(HIDDEN_SPAN)),
        # Measured while crawling (null for other inputs): crawler/raw.py fills them,
        # filters/cloaking.py turns them into reasons.
        ("crawl_cloaking_similarity", pa.float64()),
        ("crawl_tarpit_host", pa.bool_()),
    ]
)
DOCUMENT_COLUMNS = tuple(DOCUMENT_SCHEMA.names)

# Added to every document by the policy.
DECISION_FIELDS = [
    ("outcome", pa.string()),
    ("reasons", pa.list_(pa.string())),
    ("duplicate_of", pa.string()),
]


def text_id(text: str) -> str:
    """The id of a document that came without one: sha256 of its UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
