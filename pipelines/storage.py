"""Remote inputs and output folders through fsspec (s3://, gs://, hf://, ... when the matching fsspec
package is installed: s3fs, gcsfs, huggingface_hub).

The pipeline itself works on a local folder, for two reasons: object stores have no rename, so
"write a temporary name, then rename" (what makes a local write atomic) does not exist there; and the
work files of an unfinished run (``_work/``) are rewritten chunk by chunk, which suits a disk.

- **Remote inputs** are copied, one file at a time as listed, into a local staging folder
  (``<staging>/inputs/<protocol>/<bucket and key>``) and read from there; a copy whose size matches
  the remote object is reused, so ``--resume`` does not fetch it again. The ``source`` column and
  the unreadable list name the remote URL.
- **A remote OUT** is built in ``<staging>/out/`` and published when the run is finished: shards
  first, then the reports, manifest and dataset card, ``_SUCCESS`` last. Each object appears whole
  or not at all (an object store never shows half a PUT), but the folder as a whole is not atomic:
  while publishing, some objects are there and others not. Readers must treat a remote OUT without
  ``_SUCCESS`` as unfinished, exactly as a local one. ``--overwrite`` deletes the remote
  ``_SUCCESS`` first, so a reader never takes a half-replaced OUT for a finished one. A run killed
  while publishing is published again by the next call with the same OUT (``--resume`` or not).

``<staging>`` is ``$POISONGUARD_STAGING/<hash of OUT>`` (default ``~/.cache/poisonguard/staging``):
the same OUT always stages in the same place, which is what ``--resume`` needs; it is removed once
the run is published. Credentials and endpoints come from the usual places (``AWS_*`` variables,
``~/.aws``, ``gcloud``, ``HF_TOKEN``) or fsspec's ``FSSPEC_<PROTOCOL>_<OPTION>`` variables.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poisonguard.pipelines.writers import DATASET_CARD, SUCCESS

# Published in this order; _SUCCESS goes last, on its own.
PUBLISH_ORDER = (
    "clean",
    "quarantine",
    "unreadable.jsonl",
    "report.json",
    "report.html",
    "manifest.json",
    DATASET_CARD,
)

# Local staging path -> the remote URL it was copied from (the readers' `source`).
_DISPLAY: dict[str, str] = {}


def is_remote(location: str | os.PathLike[str]) -> bool:
    text = str(location)
    return "://" in text and not text.startswith("file://")


def display_name(path: str | os.PathLike[str]) -> str:
    """What a document's `source` says: the remote URL of a staged copy, else the path."""
    return _DISPLAY.get(str(path), str(path))


def _filesystem(url: str) -> tuple[Any, str]:
    from poisonguard.pipelines.readers import InputError

    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec comes with pyarrow's and datasets' extras
        raise InputError(f"{url}: remote paths need fsspec (pip install fsspec)") from exc
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise InputError(f"{url}: no fsspec file system for it ({exc})") from exc


def staging_root(out: str) -> Path:
    base = Path(os.environ.get("POISONGUARD_STAGING") or Path.home() / ".cache" / "poisonguard" / "staging")
    return base / hashlib.sha256(out.encode()).hexdigest()[:16]


def _remote_files(url: str) -> list[tuple[Any, str, str]]:
    """(fs, key, url) of every input file a remote file, folder or glob names, in a stable order."""
    from poisonguard.pipelines.readers import KNOWN_SUFFIXES, InputError

    fs, key = _filesystem(url)
    protocol = url.split("://", 1)[0]
    if any(ch in key for ch in "*?["):
        keys = sorted(fs.glob(key))
    elif fs.isdir(key):
        keys = sorted(
            k
            for k in fs.find(key)
            if k.lower().endswith(KNOWN_SUFFIXES)
            and not any(part.startswith(("_", ".")) for part in k[len(key) :].split("/") if part)
        )
    elif fs.exists(key):
        keys = [key]
    else:
        raise InputError(f"{url}: no such file or folder")
    if not keys:
        raise InputError(f"{url}: holds no .jsonl, .parquet or .warc file")
    return [(fs, k, f"{protocol}://{k}") for k in keys]


def stage_inputs(inputs: list[str], staging: Path) -> list[str]:
    """Local inputs as they are; remote ones copied under `staging`/inputs (reused when complete)."""
    local: list[str] = []
    for item in inputs:
        if not is_remote(item):
            local.append(item)
            continue
        protocol = item.split("://", 1)[0]
        for fs, key, url in _remote_files(item):
            target = staging / "inputs" / protocol / key
            size = fs.size(key)
            if not (target.exists() and target.stat().st_size == size):
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.part")
                fs.get(key, str(partial))
                os.replace(partial, target)
            _DISPLAY[str(target)] = url
            local.append(str(target))
    return local


class RemoteOut:
    """A remote OUT: checked before the run, built locally, published after it."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.fs, self.key = _filesystem(self.url)
        self.staging = staging_root(self.url)
        self.local = self.staging / "out"

    def _exists(self, name: str) -> bool:
        return bool(self.fs.exists(f"{self.key}/{name}"))

    def check(self, overwrite: bool) -> None:
        """Refuse a finished remote OUT unless `overwrite`; with it, unpublish the old run."""
        from poisonguard.pipelines.stages import OutputError

        if not self._exists(SUCCESS):
            return
        if not overwrite:
            raise OutputError(f"{self.url}: holds a finished run; pass --overwrite to replace it")
        self.fs.rm(f"{self.key}/{SUCCESS}")  # first: from here on readers see an unfinished OUT
        for name in PUBLISH_ORDER:
            if self._exists(name):
                self.fs.rm(f"{self.key}/{name}", recursive=True)

    def published_locally(self) -> bool:
        """A local run finished but its publishing was cut short."""
        return (self.local / SUCCESS).exists()

    def publish(self) -> None:
        for name in PUBLISH_ORDER:
            path = self.local / name
            if path.is_dir():
                for part in sorted(path.glob("*.parquet")):
                    self.fs.put_file(str(part), f"{self.key}/{name}/{part.name}")
            elif path.exists():
                self.fs.put_file(str(path), f"{self.key}/{name}")
        self.fs.pipe_file(f"{self.key}/{SUCCESS}", b"")
        shutil.rmtree(self.staging, ignore_errors=True)


def run_with_storage(
    runner: Callable[..., dict[str, Any]],
    inputs: list[str],
    out: str | os.PathLike[str],
    cfg: Any,
    **kwargs: Any,
) -> dict[str, Any]:
    """`runner(inputs, out, cfg, **kwargs)` with remote inputs staged and a remote OUT published."""
    out_text = str(out)
    if not is_remote(out_text) and not any(is_remote(i) for i in inputs):
        return runner(inputs, Path(out_text), cfg, **kwargs)
    if not is_remote(out_text):
        staging = staging_root(str(Path(out_text).resolve()))
        report = runner(stage_inputs(inputs, staging), Path(out_text), cfg, **kwargs)
        shutil.rmtree(staging, ignore_errors=True)
        return report
    remote = RemoteOut(out_text)
    if remote.published_locally() and not kwargs.get("overwrite"):
        remote.publish()  # a run whose publishing was interrupted: finish it
        return dict(json.loads(_read_remote(remote, "report.json")))
    remote.check(bool(kwargs.get("overwrite")))
    report = runner(stage_inputs(inputs, remote.staging), remote.local, cfg, **kwargs)
    remote.publish()
    return report


def _read_remote(remote: RemoteOut, name: str) -> str:
    return str(remote.fs.cat_file(f"{remote.key}/{name}").decode("utf-8"))
