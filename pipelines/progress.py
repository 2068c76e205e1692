"""Progress for people and for logs, one small API for every stage (read/score, dedup, LM, write,
crawl).

Modes: ``bar`` (a rich bar per stage on stderr, with items/s and ETA), ``log`` (one line per stage
every `interval_s` seconds on stderr, and one when the stage ends: what CI, Slurm and cron keep),
``json`` (the same as JSON objects, one a line), ``off``. ``auto`` is ``bar`` when stderr is a
terminal and ``log`` otherwise. ``Progress(True)`` means ``auto``, ``Progress(False)`` ``off``.

A stage:

    task = progress.start("language model", total=todo, unit="docs")
    progress.advance(task, None, docs=len(batch))          # or completed=bytes_read for byte totals
    progress.update(task, hosts=12, queue=340)              # extra fields shown beside the count
    progress.finish(task)
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

MODES = ("auto", "bar", "log", "json", "off")
LOG_INTERVAL_S = 10.0


def resolve_mode(mode: bool | str, stream: IO[str] | None = None) -> str:
    """`True`/"auto" -> bar on a terminal, else log; `False` -> off."""
    if mode is True or mode == "auto":
        target = stream or sys.stderr
        return "bar" if hasattr(target, "isatty") and target.isatty() else "log"
    if mode is False or mode is None:
        return "off"
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, not {mode!r}")
    return str(mode)


@dataclass
class _Stage:
    label: str
    total: int | None
    unit: str
    started: float = field(default_factory=time.perf_counter)
    completed: int = 0  # in `unit` (bytes for the read stage, else items)
    items: int = 0  # documents (pages for a crawl)
    fields: dict[str, Any] = field(default_factory=dict)
    last_log: float = field(default_factory=time.perf_counter)

    def rate(self) -> float:
        return self.items / max(time.perf_counter() - self.started, 1e-9)

    def eta_s(self) -> float | None:
        if not self.total or self.completed <= 0 or self.completed >= self.total:
            return None
        elapsed = time.perf_counter() - self.started
        return elapsed * (self.total - self.completed) / self.completed


def _field(name: str, value: Any) -> str:
    return (
        f"{name} {value:,}" if isinstance(value, int) and not isinstance(value, bool) else f"{name} {value}"
    )


def _item_name(unit: str) -> str:
    return "docs" if unit in ("B", "docs") else unit


class Progress:
    def __init__(
        self, enabled: bool | str = True, interval_s: float = LOG_INTERVAL_S, stream: IO[str] | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.mode = resolve_mode(enabled, self.stream)
        self.enabled = self.mode != "off"
        self.interval_s = interval_s
        self._bar: RichProgress | None = None
        self._stages: dict[TaskID, _Stage] = {}
        self._next = 0

    # -- the API the stages call ------------------------------------------------------------------

    def start(self, label: str, total: int | None, unit: str = "docs") -> TaskID:
        if not self.enabled:
            return TaskID(-1)
        stage = _Stage(label, total or None, unit)
        if self.mode == "bar":
            task = self._rich().add_task(
                label, total=stage.total, items=0, name=_item_name(unit), rate="-", extra=""
            )
        else:
            task = TaskID(self._next)
            self._next += 1
        self._stages[task] = stage
        if self.mode != "bar":
            self._log(stage, "start")
        return task

    def advance(self, task: TaskID, completed: int | None, docs: int) -> None:
        """`docs` more items done; `completed` is the new position in the stage's unit (None: += docs)."""
        stage = self._stages.get(task)
        if stage is None:
            return
        stage.items += docs
        stage.completed = stage.completed + docs if completed is None else completed
        self._show(task, stage)

    def update(self, task: TaskID, items: int | None = None, **fields: Any) -> None:
        """Set the item count (e.g. pages crawled so far) and extra fields (hosts, queue)."""
        stage = self._stages.get(task)
        if stage is None:
            return
        if items is not None:
            stage.items = items
            stage.completed = items if stage.unit != "B" else stage.completed
        stage.fields.update(fields)
        self._show(task, stage)

    def finish(self, task: TaskID) -> None:
        stage = self._stages.pop(task, None)
        if stage is None:
            return
        if stage.total:
            stage.completed = stage.total
        if self.mode == "bar" and self._bar is not None:
            self._show(task, stage)
            self._bar.stop()
            self._bar = None
        else:
            self._log(stage, "done")

    # -- output ------------------------------------------------------------------------------------

    def _rich(self) -> RichProgress:
        if self._bar is None:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description:<15}"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[items]:>9,} {task.fields[name]}"),
                TextColumn("{task.fields[rate]:>8} {task.fields[name]}/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[extra]}"),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
        return self._bar

    def _show(self, task: TaskID, stage: _Stage) -> None:
        if self.mode == "bar" and self._bar is not None:
            extra = "  ".join(
                f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in stage.fields.items()
            )
            self._bar.update(
                task,
                completed=stage.completed,
                items=stage.items,
                rate=f"{stage.rate():,.0f}",
                extra=extra,
            )
        elif time.perf_counter() - stage.last_log >= self.interval_s:
            self._log(stage, "progress")

    def _log(self, stage: _Stage, event: str) -> None:
        stage.last_log = time.perf_counter()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        eta = stage.eta_s()
        name = _item_name(stage.unit)
        if self.mode == "json":
            record: dict[str, Any] = {
                "time": now,
                "event": event,
                "stage": stage.label,
                name: stage.items,
                f"{name}_per_s": round(stage.rate(), 2),
                "elapsed_s": round(time.perf_counter() - stage.started, 1),
                "eta_s": None if eta is None else round(eta, 1),
            }
            if stage.total:
                record.update(done=stage.completed, total=stage.total, unit=stage.unit)
            record.update(stage.fields)
            line = json.dumps(record, default=str)
        else:
            parts = [f"{stage.items:,} {name}"]
            if stage.total:
                parts.append(f"{100 * min(stage.completed / stage.total, 1):.0f}%")
            parts.append(f"{stage.rate():,.1f} {name}/s")
            parts += [_field(k, v) for k, v in stage.fields.items()]
            if eta is not None:
                parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
            what = {"start": "started", "done": "done", "progress": ""}[event]
            line = f"{now} poisonguard {stage.label}: {what + ' ' if what else ''}{', '.join(parts)}"
        self.stream.write(line + "\n")
        self.stream.flush()
