"""`poisonguard` command line: filter, crawl, nightly, report, explain.

Exit codes: 0 ok, 1 failed, 2 usage (bad arguments, config, input or output folder), 75 try again
later (another run holds the lock).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from poisonguard.pipelines.config import ConfigError, PipelineConfig, load_config
from poisonguard.pipelines.engines import Engine, EngineError, engine_for

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TRY_LATER = 0, 1, 2, 75

app = typer.Typer(
    name="poisonguard",
    help="Keep poisoned web content out of training corpora: score every document, write clean "
    "Parquet shards and a quarantine that says why each document was dropped.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out_console = Console()


def _print_version(value: bool) -> None:
    if value:
        from poisonguard.pipelines import __version__

        out_console.print(f"poisonguard {__version__}", highlight=False)
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Keep poisoned web content out of training corpora."""


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML file with the settings to change (see configs/default.yaml)."),
]


EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="`local` (this machine, multiprocessing) or `ray` (a Ray cluster; same "
        "detectors, same outcomes).",
        case_sensitive=False,
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster to join (e.g. ray://head:10001 or auto); default: a "
        "local Ray started for this run.",
    ),
]


def plain(text: object) -> str:
    """A string for the console that shows exactly what it holds: control characters (ANSI escapes
    included) written as <U+XXXX> and rich markup escaped, so `in/[b]dir` stays `in/[b]dir`."""
    from poisonguard.pipelines.report_html import escape_visible

    return escape(escape_visible(str(text), html_out=False))


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    console.print(f"[red]poisonguard: error:[/red] {plain(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def warn(message: str) -> None:
    console.print(f"[yellow]poisonguard: warning:[/yellow] {plain(message)}", highlight=False, soft_wrap=True)


@contextmanager
def out_lock(out: str | Path) -> Iterator[None]:
    """One run at a time writes OUT: a second `filter`/`crawl` on it exits 75 while the first lives.
    (A remote OUT is staged in a folder of its own and published whole, _SUCCESS last.)"""
    from poisonguard.pipelines.locks import LOCK_FILE, LockHeld, hold_lock
    from poisonguard.pipelines.storage import is_remote

    if is_remote(str(out)):
        yield
        return
    out = Path(out)
    with ExitStack() as stack:
        try:
            stack.enter_context(hold_lock(out / LOCK_FILE, "run on this output folder"))
        except LockHeld as exc:
            raise fail(str(exc), EXIT_TRY_LATER) from None
        except OSError as exc:
            raise fail(f"{out}: cannot create the output folder's lock ({exc.strerror or exc})") from None
        yield


def _load(config: Path | None, overrides: dict[str, Any]) -> PipelineConfig:
    try:
        return load_config(config, overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None


LogFormatOption = Annotated[
    str,
    typer.Option(
        "--log-format",
        help="Progress on stderr: `text` (a bar on a terminal, else a line per stage every ~10 s) "
        "or `json` (one JSON object a line).",
        case_sensitive=False,
    ),
]


def progress_mode(quiet: bool, log_format: str) -> str:
    """The Progress mode for the command-line options (see pipelines/progress.py)."""
    fmt = log_format.lower()
    if fmt not in ("text", "json"):
        raise fail(f"--log-format must be text or json, not {log_format!r}")
    if quiet:
        return "off"
    return "json" if fmt == "json" else "auto"


PresetOption = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help="Field layout of the input: hf, datatrove, fineweb, dolma, redpajama, redpajama-v1 "
        "(config input.preset).",
    ),
]
TextKeyOption = Annotated[
    str | None,
    typer.Option("--text-key", help="Field holding the text; dotted paths such as metadata.content work."),
]
IdKeyOption = Annotated[str | None, typer.Option("--id-key", help="Field holding the document id.")]
UrlKeyOption = Annotated[
    str | None, typer.Option("--url-key", help="Field holding the URL, e.g. metadata.url (datatrove).")
]


def _input_overrides(
    preset: str | None, text_key: str | None, id_key: str | None, url_key: str | None
) -> dict[str, Any]:
    """--preset and --*-key as an `input:` config section (validated with the rest of the config)."""
    given = {"preset": preset, "text_key": text_key, "id_key": id_key, "url_key": url_key}
    section = {k: v for k, v in given.items() if v is not None}
    return {"input": section} if section else {}


def _overrides(workers: int | None, lm: str | None) -> dict[str, Any]:
    """Command-line options that change the config."""
    overrides: dict[str, Any] = {}
    if workers is not None:
        overrides["run"] = {"workers": workers}
    if lm is not None:
        overrides["perplexity"] = {"model": lm}
    return overrides


def _in(out: str | Path, name: str) -> str:
    """OUT/name for a local path or a remote URL (s3://bucket/out)."""
    return f"{str(out).rstrip('/')}/{name}" if "://" in str(out) else str(Path(out) / name)


def print_summary(report: dict[str, Any], out: str | Path) -> None:
    """The one-screen summary after a run."""
    counts = report["counts"]
    total = max(counts.get("in", 0), 1)
    table = Table(
        title=f"poisonguard {report.get('command', 'filter')}: {counts.get('in', 0):,} documents in",
        show_header=True,
        header_style="bold",
    )
    table.add_column("outcome")
    table.add_column("documents", justify="right")
    table.add_column("share", justify="right")
    for name in ("kept", "duplicate", "quarantined", "filtered", "unreadable"):
        n = counts.get(name, 0)
        table.add_row(name, f"{n:,}", f"{100 * n / total:.1f}%")
    out_console.print(table)
    reasons = list(report.get("reasons", {}).items())[:8]
    if reasons:
        say("top reasons: " + ", ".join(f"{r} ({n:,})" for r, n in reasons))
    mined = report.get("trigger_candidates") or []
    if mined:
        say(
            "trigger candidates: "
            + ", ".join(
                f"{m.get('candidate')!r} ({m.get('documents', '?')} docs, {m.get('hosts', '?')} hosts)"
                for m in mined[:5]
            )
        )
    if report.get("unreadable_total"):
        first = report["unreadable"][0]
        say(
            f"unreadable records: {report['unreadable_total']:,} (first: {first['file']} "
            f"{first['where']}: {first['why']}); full list in {_in(out, 'unreadable.jsonl')}"
        )
    if report.get("skipped_inputs_total"):
        listed = report.get("skipped_inputs") or []
        say(
            f"files not read: {report['skipped_inputs_total']:,} (first: {listed[0] if listed else '?'}); "
            f"all in {_in(out, 'report.json')} (skipped_inputs)"
        )
    dup_ids = report.get("duplicate_ids") or {}
    if dup_ids.get("documents"):
        first_id = (dup_ids.get("examples") or [{}])[0].get("id")
        say(
            f"duplicate ids: {dup_ids['documents']:,} documents share an id with an earlier one "
            f"(first: {first_id!r}); each got its own outcome, see report.json (duplicate_ids)"
        )
    rate = report.get("docs_per_s")
    say(
        f"time {report.get('elapsed_s', 0):.1f} s, {rate or 0:,.1f} docs/s, "
        f"{report.get('mb_per_s') or 0:.2f} MB/s"
    )
    say(f"clean shards: {_in(out, 'clean')}   quarantine: {_in(out, 'quarantine')}")
    say(f"report: {_in(out, 'report.html')}  ({_in(out, 'report.json')})")


def say(text: str) -> None:
    """One line of the summary on stdout, shown exactly (no markup, control characters visible)."""
    from poisonguard.pipelines.report_html import escape_visible

    out_console.print(escape_visible(text, html_out=False), highlight=False, markup=False, soft_wrap=True)


@app.command("filter")
def filter_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="JSONL (.jsonl, .gz, .zst), Parquet or WARC files, "
            "directories or globs. Each record needs a text field (`text`; see --text-key, --preset)."
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Output folder: clean/, quarantine/, report. A URL (s3://, gs://, hf://) publishes the "
            "finished run there, _SUCCESS last.",
        ),
    ],
    config: ConfigOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="Processes for the cheap detectors (default: config "
            "run.workers). Output is identical for any value.",
        ),
    ] = None,
    lm: Annotated[
        str | None,
        typer.Option(
            "--lm",
            help="Language model for the perplexity detector: a "
            "local model directory or HF cache entry (default: shipped "
            "SmolLM2-135M).",
        ),
    ] = None,
    no_lm: Annotated[
        bool, typer.Option("--no-lm", help="Skip the language-model stage (fast; catches less).")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a finished run in OUT.")] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run in OUT from its finished chunks.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")] = False,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    preset: PresetOption = None,
    text_key: TextKeyOption = None,
    id_key: IdKeyOption = None,
    url_key: UrlKeyOption = None,
    log_format: LogFormatOption = "text",
) -> None:
    """Filter an existing corpus into clean shards, a quarantine and a report."""
    chosen = _engine(engine, ray_address)
    mode = progress_mode(quiet, log_format)
    cfg = _load(config, {**_overrides(workers, lm), **_input_overrides(preset, text_key, id_key, url_key)})
    _check_inputs(inputs, out)
    with out_lock(out):
        report = _run_filter(
            inputs,
            out,
            cfg,
            overwrite=overwrite,
            resume=resume,
            use_lm=not no_lm,
            progress=mode,
            engine=chosen,
        )
    if not quiet:
        print_summary(report, out)


def _engine(name: str, address: str | None) -> Engine:
    """The engine of --engine/--ray-address, checked before any work starts."""
    try:
        return engine_for(name, address)
    except EngineError as exc:
        raise fail(str(exc)) from None


def _check_inputs(inputs: list[str], out: str) -> None:
    """Usage errors about the inputs and OUT, found before OUT (or its lock) is created."""
    from poisonguard.pipelines.readers import InputError, expand_inputs
    from poisonguard.pipelines.stages import OutputError, check_out_outside_inputs
    from poisonguard.pipelines.storage import is_remote

    if is_remote(out) or any(is_remote(i) for i in inputs):
        return  # remote inputs are staged first; run_filter checks the local copies
    try:
        check_out_outside_inputs(inputs, expand_inputs(inputs), Path(out))
    except (InputError, OutputError) as exc:
        raise fail(str(exc)) from None


def _run_filter(
    inputs: list[str], out: str | Path, cfg: PipelineConfig, engine: Engine, **kwargs: Any
) -> dict[str, Any]:
    from poisonguard.pipelines.readers import InputError, NoTextError
    from poisonguard.pipelines.stages import OutputError
    from poisonguard.pipelines.storage import run_with_storage

    mode = kwargs.pop("progress", "auto")
    try:
        return run_with_storage(engine.filter, inputs, out, cfg, show_progress=mode, **kwargs)
    except (InputError, OutputError) as exc:
        raise fail(str(exc)) from None
    except NoTextError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    except KeyboardInterrupt:
        raise fail("interrupted; continue with --resume", EXIT_FAILED) from None
    except Exception as exc:
        if os.environ.get("POISONGUARD_DEBUG"):
            raise
        raise fail(
            f"{type(exc).__name__}: {exc} (set POISONGUARD_DEBUG=1 for the traceback)", EXIT_FAILED
        ) from None


@app.command("crawl")
def crawl_command(
    urls: Annotated[
        list[str] | None, typer.Argument(help="Seed URLs; links are followed within their hosts.")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder: raw/, clean/, quarantine/, report.")
    ] = Path("crawl-out"),
    seeds_file: Annotated[
        Path | None, typer.Option("--seeds-file", help="A file with one seed URL a line.")
    ] = None,
    sitemap: Annotated[
        str | None, typer.Option("--sitemap", help="A sitemap URL whose pages are seeds.")
    ] = None,
    config: ConfigOption = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="Processes for the cheap detectors.")
    ] = None,
    lm: Annotated[
        str | None, typer.Option("--lm", help="Language model directory (default: shipped SmolLM2-135M).")
    ] = None,
    no_lm: Annotated[bool, typer.Option("--no-lm", help="Skip the language-model stage.")] = False,
    no_filter: Annotated[
        bool, typer.Option("--no-filter", help="Only crawl: write OUT/raw/ and the crawl stats.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a finished crawl in OUT (raw pages too).")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted crawl and its filtering.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")] = False,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    log_format: LogFormatOption = "text",
) -> None:
    """Crawl sites politely, keep every fetched page in OUT/raw/, then filter them like `filter`."""
    from poisonguard.crawler.run import load_seeds

    chosen = _engine(engine, ray_address)
    mode = progress_mode(quiet, log_format)
    cfg = _load(config, _overrides(workers, lm))
    try:
        seeds = load_seeds(list(urls or []), seeds_file, sitemap)
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    if not seeds:
        raise fail("no seed URLs: give URLs, --seeds-file or --sitemap")
    with out_lock(out):
        _crawl_locked(seeds, out, cfg, overwrite, resume, no_filter, no_lm, quiet, chosen, mode)


def _crawl_locked(
    seeds: list[str],
    out: Path,
    cfg: PipelineConfig,
    overwrite: bool,
    resume: bool,
    no_filter: bool,
    no_lm: bool,
    quiet: bool,
    engine: Engine,
    mode: str,
) -> None:
    """`crawl` while it holds OUT's lock."""
    import shutil

    from poisonguard.core.files import write_json
    from poisonguard.crawler.run import CrawlError
    from poisonguard.pipelines.locks import LOCK_FILE
    from poisonguard.pipelines.writers import SUCCESS

    if (out / SUCCESS).exists() or (out / "raw").exists():
        if overwrite:
            for child in out.iterdir():  # the lock file stays: this run holds it
                if child.name != LOCK_FILE:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        elif not resume:
            raise fail(f"{out}: holds a crawl; pass --resume to continue it or --overwrite to replace it")
    try:
        stats = _crawl_with_progress(engine, seeds, out, cfg, resume, mode)
    except CrawlError as exc:
        raise fail(f"crawl failed: {exc}", EXIT_FAILED) from None
    if not stats.get("pages_2xx"):
        raise fail(f"crawl fetched no page (finish reason: {stats.get('finish_reason')})", EXIT_FAILED)
    if no_filter:
        write_json(out / "crawl-stats.json", stats)
        if not quiet:
            say(f"crawled {stats['pages_2xx']:,} pages into {out / 'raw'}")
        return
    report = _run_filter(
        [str(out / "raw")],
        out,
        cfg,
        resume=resume,
        use_lm=not no_lm,
        progress=mode,
        extra_report={"command": "crawl", "crawl": stats},
        engine=engine,
    )
    if not quiet:
        print_summary(report, out)
        say(f"crawl: {stats['pages']:,} pages, finish reason {stats.get('finish_reason')}")
    if str(stats.get("finish_reason", "finished")) not in (
        "finished",
        "closespider_pagecount",
        "closespider_timeout",
        "closespider_itemcount",
    ):
        raise typer.Exit(EXIT_FAILED)


def _crawl_with_progress(
    engine: Engine, seeds: list[str], out: Path, cfg: PipelineConfig, resume: bool, mode: str
) -> dict[str, Any]:
    """The engine's crawl with a `crawl` stage: pages, pages/s, hosts and the scheduler's queue."""
    from poisonguard.pipelines.progress import Progress

    progress = Progress(mode)
    task = progress.start("crawl", total=cfg.crawl.max_pages or None, unit="pages")

    def update(event: dict[str, Any]) -> None:
        fields = {k: event[k] for k in ("hosts", "queue", "stopped_hosts") if event.get(k) is not None}
        progress.update(task, items=int(event.get("pages") or 0), **fields)

    try:
        return engine.crawl(seeds, out, cfg, resume=resume, progress=update)
    finally:
        progress.finish(task)


@app.command("report")
def report_command(
    out: Annotated[Path, typer.Argument(help="Output folder of a finished run.")],
) -> None:
    """Rebuild OUT/report.html from the shards and report.json alone."""
    from poisonguard.pipelines.report_html import write_report_html

    if not (out / "report.json").exists():
        raise fail(f"{out}: no report.json here; is this the output folder of a finished run?")
    _warn_unfinished(out)
    try:
        path = write_report_html(out)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, pa.ArrowException) as exc:
        raise fail(f"{out}: cannot build the report: {exc}") from None
    say(f"report: {path}")


def _warn_unfinished(out: Path) -> None:
    from poisonguard.pipelines.writers import SUCCESS

    if not (out / SUCCESS).exists():
        warn(f"{out}: no _SUCCESS here, so this run did not finish; what follows may be incomplete")


@app.command("explain")
def explain_command(
    out: Annotated[Path, typer.Argument(help="Output folder of a finished run.")],
    doc_id: Annotated[str, typer.Argument(help="The document's id.")],
) -> None:
    """Print one document's outcome, reasons and signals."""
    from poisonguard.pipelines.explain import explain

    _warn_unfinished(out)
    try:
        text = explain(out, doc_id)
    except (FileNotFoundError, KeyError) as exc:
        raise fail(str(exc.args[0] if exc.args else exc)) from None
    except (OSError, ValueError, TypeError, pa.ArrowException) as exc:
        raise fail(f"{out}: cannot read this run's files: {exc}") from None
    say(text)


@app.command("nightly")
def nightly_command(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Nightly config (see configs/nightly.yaml): sources, output root, state store, drift.",
        ),
    ] = None,
    date: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="Logical date of the run, YYYY-MM-DD (default: today, UTC); a finished date is not "
            "run again.",
        ),
    ] = None,
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            help="File, folder or glob to read instead of the config's sources.inputs (repeatable).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output root (ROOT/<date>/ per run).",
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="SQLite state store (default ROOT/state.sqlite).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo a finished date (the latest only).")] = False,
    no_lm: Annotated[bool, typer.Option("--no-lm", help="Skip the language-model stage.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings only; no summary.")] = False,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    log_format: LogFormatOption = "text",
) -> None:
    """Filter what arrived since the last run against everything seen before; catch split-view swaps.

    With --engine ray the crawl (seeds fanned out by host) and filter steps run on Ray; the lock,
    ledger, state store and commit stay on this machine."""
    from poisonguard.pipelines.nightly import run_nightly
    from poisonguard.pipelines.nightly_config import NightlyError, load_nightly_config

    chosen = _engine(engine, ray_address)

    mode = progress_mode(quiet, log_format)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_log_formatter(mode))
    nightly_log = logging.getLogger("poisonguard.nightly")
    nightly_log.addHandler(handler)
    nightly_log.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        cfg, base = load_nightly_config(config)
        result = run_nightly(
            cfg,
            base=base,
            date=date,
            inputs=inputs,
            out=out,
            state=state,
            force=force,
            use_lm=False if no_lm else None,
            show_progress=mode,
            engine=chosen,
        )
    except NightlyError as exc:
        raise fail(str(exc), exc.code) from None
    except KeyboardInterrupt:
        raise fail("interrupted; run again to finish this date", EXIT_FAILED) from None
    except Exception as exc:
        if os.environ.get("POISONGUARD_DEBUG"):
            raise
        raise fail(
            f"{type(exc).__name__}: {exc} (set POISONGUARD_DEBUG=1 for the traceback)", EXIT_FAILED
        ) from None
    finally:
        nightly_log.removeHandler(handler)
    if not quiet:
        if result["status"] == "skipped":
            say(f"nightly {result['date']}: already done ({result['out']})")
        elif result["report"] is not None:
            print_summary(result["report"], result["out"])


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        return json.dumps(
            {"time": when, "event": "log", "level": record.levelname, "message": record.getMessage()}
        )


def _log_formatter(mode: str) -> logging.Formatter:
    if mode == "json":
        return _JsonFormatter()
    return logging.Formatter("%(asctime)s poisonguard %(levelname)s %(message)s")


def main() -> None:
    try:
        app()
    except ConfigError as exc:  # defensive: config errors raised outside _load
        console.print(f"[red]poisonguard: error:[/red] {plain(exc)}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
