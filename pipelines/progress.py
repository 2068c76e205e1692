"""Progress bars on stderr (documents, docs/s, ETA); silent when disabled."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: RichProgress | None = None
        self._started: dict[TaskID, float] = {}
        self._docs: dict[TaskID, int] = {}

    def start(self, label: str, total: int | None, unit: str) -> TaskID:
        if not self.enabled:
            return TaskID(-1)
        if self._bar is None:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description:<15}"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[docs]:>9,} docs"),
                TextColumn("{task.fields[rate]:>8} docs/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
                transient=False,
            )
            self._bar.start()
        task = self._bar.add_task(label, total=total or None, docs=0, rate="-")
        self._started[task] = time.perf_counter()
        self._docs[task] = 0
        return task

    def advance(self, task: TaskID, completed: int | None, docs: int) -> None:
        if self._bar is None or task < 0:
            return
        self._docs[task] += docs
        elapsed = max(time.perf_counter() - self._started[task], 1e-9)
        update: dict[str, Any] = {"docs": self._docs[task], "rate": f"{self._docs[task] / elapsed:,.0f}"}
        if completed is None:
            self._bar.update(task, advance=docs, **update)
        else:
            self._bar.update(task, completed=completed, **update)

    def finish(self, task: TaskID) -> None:
        if self._bar is None or task < 0:
            return
        total = self._bar.tasks[[t.id for t in self._bar.tasks].index(task)].total
        if total:
            self._bar.update(task, completed=total)
        self._bar.stop()
        self._bar = None
