"""The nightly state store: one SQLite file (WAL) beside a folder of dedup index snapshots.

Tables
    ``runs``          the ledger, one row per logical date: status (running / failed / done), timings,
                      counts, config hash, the planned input files, the dedup index it started from
                      (``base_index``) and the one it left (``index_file``).
    ``files``         input files consumed by a finished run: path, size, mtime, sha256, date.
    ``urls``          per URL: first seen, last seen, sha256 of the last text.
    ``url_versions``  per URL and date: sha256 of the text, MinHash of drift's text (digit-only
                      words left out; ``signature_of``), and whether the run accepted it (not
                      quarantined). Drift compares with the last *accepted* version, so a page
                      swapped and quarantined once does not become the baseline the next night.
    ``meta``          key/value: the MinHash settings every stored signature was computed with.

Crash safety: nothing here changes for a date until :meth:`StateStore.commit_run`, which writes all of
a run's rows in one transaction after the run's output is complete (``ROOT/<date>/_SUCCESS``). The
index snapshot it points to is written (atomically, under a name of its own) before that transaction,
so a crash leaves either the old pointer or the new one, never half of either.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poisonguard.filters.drift import NO_NUMBERS, WHOLE_TEXT, Version

# 2: url_versions.topic (the drift detector's topic sketch); 3: url_versions.signature_of (what the
# signature is the MinHash of: drift's text without its numbers; NULL, a row of an older store: the text)
SCHEMA_VERSION = 3
RUNNING, FAILED, DONE = "running", "failed", "done"
_IN_CHUNK = 500  # bound on `?` parameters per IN (...) query (SQLite's default limit is 999+)

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    date TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    duration_s REAL,
    config_hash TEXT NOT NULL,
    inputs TEXT NOT NULL,
    base_index TEXT,
    index_file TEXT,
    counts TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    date TEXT NOT NULL,
    PRIMARY KEY (path, sha256)
);
CREATE INDEX IF NOT EXISTS files_sha ON files (sha256);
CREATE TABLE IF NOT EXISTS urls (
    url TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS url_versions (
    url TEXT NOT NULL,
    date TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    signature BLOB NOT NULL,
    accepted INTEGER NOT NULL,
    topic BLOB,
    signature_of TEXT,
    PRIMARY KEY (url, date)
);
"""


class StateError(RuntimeError):
    """The state store cannot be used (unreadable, newer schema, other MinHash settings)."""


@dataclass(frozen=True)
class InputFile:
    path: str
    size: int
    mtime: float
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mtime": self.mtime, "sha256": self.sha256}


@dataclass(frozen=True)
class UrlVersion:
    url: str
    sha256: str
    signature: np.ndarray
    accepted: bool
    topic: np.ndarray | None = None  # drift.topic_sketch of the text
    signature_of: str = NO_NUMBERS  # drift.Version.signature_of


class StateStore:
    """Open (and create) the store at ``path``; ``dtype`` is the MinHash signature dtype."""

    def __init__(self, path: Path, dtype: type[np.unsignedinteger] = np.uint32) -> None:
        self.path = Path(path)
        self.dtype = dtype
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed run survives a power cut too, not only a killed process.
            self.db.execute("PRAGMA synchronous=FULL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"{self.path}: state store schema {version} is newer than this "
                    f"poisonguard ({SCHEMA_VERSION}); upgrade poisonguard"
                )
            self.db.executescript(_DDL)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path}: cannot open the state store: {exc}") from exc

    def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION in one transaction, so that a kill leaves the old
        schema or the new one; a column found present (added by a run killed before the version
        was set) is not added twice."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(url_versions)")}
            if "topic" not in columns:  # a store written before the topic sketch: its versions have none
                self.db.execute("ALTER TABLE url_versions ADD COLUMN topic BLOB")
            if "signature_of" not in columns:  # older rows keep NULL: signatures of the whole text
                self.db.execute("ALTER TABLE url_versions ADD COLUMN signature_of TEXT")
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    @property
    def index_dir(self) -> Path:
        return self.path.parent / (self.path.stem + "-index")

    # -- meta ---------------------------------------------------------------------------------

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Refuse a store whose signatures were computed with other MinHash settings."""
        row = self.db.execute("SELECT value FROM meta WHERE key='minhash'").fetchone()
        if row is None:
            return
        stored = json.loads(row[0])
        if stored != settings:
            diff = ", ".join(
                f"{k}: state {stored.get(k)!r}, config {settings.get(k)!r}"
                for k in sorted(set(stored) | set(settings))
                if stored.get(k) != settings.get(k)
            )
            raise StateError(
                f"{self.path}: state built with other MinHash settings ({diff}); "
                "use the same dedup settings or a new state store"
            )

    # -- ledger -------------------------------------------------------------------------------

    def run(self, date: str) -> dict[str, Any] | None:
        cur = self.db.execute("SELECT * FROM runs WHERE date=?", (date,))
        row = cur.fetchone()
        if row is None:
            return None
        out = dict(zip([d[0] for d in cur.description], row, strict=True))
        out["inputs"] = json.loads(out["inputs"])
        out["counts"] = json.loads(out["counts"]) if out["counts"] else None
        return out

    def runs(self) -> list[dict[str, Any]]:
        dates = [r[0] for r in self.db.execute("SELECT date FROM runs ORDER BY date")]
        return [r for r in (self.run(d) for d in dates) if r is not None]

    def latest_done(self, before: str | None = None) -> dict[str, Any] | None:
        if before is None:
            row = self.db.execute("SELECT date FROM runs WHERE status=? ORDER BY date DESC LIMIT 1", (DONE,))
        else:
            row = self.db.execute(
                "SELECT date FROM runs WHERE status=? AND date<? ORDER BY date DESC LIMIT 1", (DONE, before)
            )
        found = row.fetchone()
        return self.run(found[0]) if found else None

    def begin_run(self, date: str, config_hash: str, inputs: list[InputFile], base_index: str | None) -> None:
        """Record the plan of a run about to start (an unfinished row tells the next run what to redo)."""
        self.db.execute(
            "INSERT INTO runs (date, status, started, config_hash, inputs, base_index) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(date) DO UPDATE SET status=excluded.status, started=excluded.started, "
            "config_hash=excluded.config_hash, inputs=excluded.inputs, base_index=excluded.base_index, "
            "finished=NULL, error=NULL",
            (date, RUNNING, time.time(), config_hash, json.dumps([f.as_dict() for f in inputs]), base_index),
        )

    def mark_failed(self, date: str, error: str) -> None:
        self.db.execute(
            "UPDATE runs SET status=?, error=?, finished=? WHERE date=? AND status<>?",
            (FAILED, error[:2000], time.time(), date, DONE),
        )

    # -- files ----------------------------------------------------------------------------------

    def known_sha(self, path: str, size: int, mtime: float, exclude_date: str | None = None) -> str | None:
        """The sha256 of a consumed file with this path, size and mtime (so it need not be read again)."""
        row = self.db.execute(
            "SELECT sha256 FROM files WHERE path=? AND size=? AND mtime=? AND date IS NOT ? LIMIT 1",
            (path, size, mtime, exclude_date),
        ).fetchone()
        return row[0] if row else None

    def consumed_sha(self, sha256: str, exclude_date: str | None = None) -> str | None:
        """The date of the run that consumed a file with this content, if any."""
        row = self.db.execute(
            "SELECT date FROM files WHERE sha256=? AND date IS NOT ? LIMIT 1", (sha256, exclude_date)
        ).fetchone()
        return row[0] if row else None

    # -- URL history ----------------------------------------------------------------------------

    def versions(self, urls: Sequence[str], before: str) -> dict[str, Version]:
        """Each URL's last accepted version from a run before ``before``."""
        found: dict[str, Version] = {}
        unique = list(dict.fromkeys(u for u in urls if u))
        for start in range(0, len(unique), _IN_CHUNK):
            part = unique[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(
                f"SELECT v.url, v.date, v.sha256, v.signature, v.topic, v.signature_of FROM url_versions v "
                f"WHERE v.url IN ({marks}) AND v.accepted=1 AND v.date = ("
                f"  SELECT MAX(w.date) FROM url_versions w WHERE w.url=v.url AND w.accepted=1 AND w.date<?)",
                (*part, before),
            )
            for url, date, sha, blob, topic, kind in rows:
                found[url] = Version(
                    date=date,
                    sha256=sha,
                    signature=np.frombuffer(blob, dtype=self.dtype),
                    topic=None if topic is None else np.frombuffer(topic, dtype=np.uint32),
                    signature_of=kind or WHOLE_TEXT,
                )
        return found

    def url_rows(self) -> list[tuple[str, str, str, str]]:
        return list(self.db.execute("SELECT url, first_seen, last_seen, sha256 FROM urls ORDER BY url"))

    def version_rows(self) -> list[tuple[str, str, str, int]]:
        return list(
            self.db.execute("SELECT url, date, sha256, accepted FROM url_versions ORDER BY url, date")
        )

    # -- commit -----------------------------------------------------------------------------------

    def commit_run(
        self,
        date: str,
        *,
        inputs: Iterable[InputFile],
        versions: Iterable[UrlVersion],
        counts: dict[str, Any],
        index_file: str | None,
        settings: dict[str, Any],
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """Everything a finished run changes, in one transaction (all of it or none of it)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            # A --force redo of this date replaces what its first run recorded.
            db.execute("DELETE FROM url_versions WHERE date=?", (date,))
            db.execute("DELETE FROM files WHERE date=?", (date,))
            db.executemany(
                "INSERT INTO url_versions (url, date, sha256, signature, accepted, topic, signature_of) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    (
                        v.url,
                        date,
                        v.sha256,
                        np.ascontiguousarray(v.signature, dtype=self.dtype).tobytes(),
                        int(v.accepted),
                        None if v.topic is None else np.ascontiguousarray(v.topic, dtype=np.uint32).tobytes(),
                        v.signature_of,
                    )
                    for v in versions
                ),
            )
            db.execute(
                "INSERT INTO urls (url, first_seen, last_seen, sha256) "
                "SELECT url, date, date, sha256 FROM url_versions WHERE date=? "
                "ON CONFLICT(url) DO UPDATE SET last_seen=excluded.last_seen, sha256=excluded.sha256, "
                "first_seen=MIN(urls.first_seen, excluded.first_seen)",
                (date,),
            )
            # Keep, per URL seen tonight, tonight's version and the last accepted one before it (the
            # baseline a --force redo of tonight compares with); older versions are never read again.
            db.execute(
                "DELETE FROM url_versions WHERE date<? "
                "AND url IN (SELECT url FROM url_versions WHERE date=?) "
                "AND NOT (accepted=1 AND date=(SELECT MAX(w.date) FROM url_versions w "
                "WHERE w.url=url_versions.url AND w.accepted=1 AND w.date<?))",
                (date, date, date),
            )
            db.executemany(
                "INSERT OR REPLACE INTO files (path, sha256, size, mtime, date) VALUES (?,?,?,?,?)",
                ((f.path, f.sha256, f.size, f.mtime, date) for f in inputs),
            )
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('minhash', ?)",
                (json.dumps(settings, sort_keys=True),),
            )
            now = time.time()
            db.execute(
                "UPDATE runs SET status=?, finished=?, duration_s=?-started, counts=?, index_file=?, "
                "error=NULL WHERE date=?",
                (DONE, now, now, json.dumps(counts, sort_keys=True), index_file, date),
            )
            if before_commit is not None:
                before_commit()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
