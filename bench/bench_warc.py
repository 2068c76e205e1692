"""WARC reading: FastWARC (what poisonguard's reader uses) against warcio, same file, same run.

Writes the Python 3.11 docs (from the bench cache) as HTTP response records into a gzipped WARC,
then iterates the response records and reads every payload with each library. The HTML pass is
left out: it is the same for both and is measured by bench_html.

Run: python -m bench.bench_warc [--copies 4]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator as WarcioIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from bench.corpus import python_docs_dir


def write_warc(path: Path, pages: list[tuple[str, bytes]], copies: int) -> int:
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for copy in range(copies):
            for name, body in pages:
                headers = StatusAndHeaders(
                    "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
                )
                record = writer.create_warc_record(
                    f"http://docs.example/{copy}/{name}",
                    "response",
                    payload=io.BytesIO(body),
                    http_headers=headers,
                )
                writer.write_record(record)
    return path.stat().st_size


def read_fastwarc(path: Path) -> tuple[int, int]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    records = size = 0
    with open(path, "rb") as fh:
        for rec in ArchiveIterator(fh, record_types=WarcRecordType.response, parse_http=True):
            size += len(rec.reader.read())
            records += 1
    return records, size


def read_warcio(path: Path) -> tuple[int, int]:
    records = size = 0
    with open(path, "rb") as fh:
        for rec in WarcioIterator(fh):
            if rec.rec_type == "response":
                size += len(rec.content_stream().read())
                records += 1
    return records, size


def best_of(fn, path: Path, repeats: int = 3) -> tuple[float, tuple[int, int]]:  # type: ignore[no-untyped-def]
    times = []
    result = (0, 0)
    for _ in range(repeats):
        start = time.process_time()
        result = fn(path)
        times.append(time.process_time() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=4, help="times the docs are written (default 4)")
    args = parser.parse_args()
    root = python_docs_dir()
    pages = [(str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*.html"))]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.warc.gz"
        size = write_warc(path, pages, args.copies)
        warcio_s, (n1, b1) = best_of(read_warcio, path)
        fast_s, (n2, b2) = best_of(read_fastwarc, path)
    assert (n1, b1) == (n2, b2), "the two libraries read different records"
    print(
        f"{n1:,} response records, {b1 / 1e6:.0f} MB of HTML, {size / 1e6:.1f} MB gzipped WARC "
        "(Python 3.11 docs); CPU seconds, best of 3\n"
    )
    print("| library | CPU s | MB/s (payload) | records/s | x warcio |\n|---|---:|---:|---:|---:|")
    for name, secs in (("warcio (baseline)", warcio_s), ("FastWARC (used)", fast_s)):
        print(f"| {name} | {secs:.2f} | {b1 / 1e6 / secs:.0f} | {n1 / secs:,.0f} | {warcio_s / secs:.2f} |")


if __name__ == "__main__":
    main()
