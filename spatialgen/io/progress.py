"""Progress display with rich; falls back to a plain line now and then when not on a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
console = Console(stderr=True)


class TrainingProgress:
    """A bar with step, loss and rate; in a log file, one line every ``every_s`` seconds instead."""

    def __init__(self, *, total: int, start: int = 0, enabled: bool = True, every_s: float = 30.0):
        self.total, self.start, self.enabled, self.every_s = total, start, enabled, every_s
        self.interactive = enabled and console.is_terminal
        self._last_print = 0.0
        self._progress: Progress | None = None

    def __enter__(self) -> TrainingProgress:
        if self.interactive:
            self._progress = Progress(
                TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.2f} it/s"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=console,
            )  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task("train", total=self.total, completed=self.start, loss=float("nan"), rate=0.0)
        return self

    def update(self, step: int, *, loss: float, rate: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, loss=loss, rate=rate)
        elif self.enabled and (time.monotonic() - self._last_print > self.every_s or step == self.total):
            self._last_print = time.monotonic()
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            print(f"step {step}/{self.total}  loss {loss:.4f}  {rate:.2f} it/s  eta {eta / 60:.1f} min", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


def track(
    items: Iterable[T], *, description: str, total: int | None = None, enabled: bool = True, every_s: float = 20.0
) -> Iterator[T]:
    """Iterate with a transient rich progress bar; off a terminal (a log, a pipe), a plain line every
    ``every_s`` seconds of a long loop instead, so that slow work is never silent."""
    if not enabled:
        yield from items
        return
    if not console.is_terminal:
        yield from _track_plainly(items, description=description, total=total, every_s=every_s)
        return
    with Progress(
        TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    ) as progress:  # fmt: skip
        yield from progress.track(items, total=total)


def _track_plainly(items: Iterable[T], *, description: str, total: int | None, every_s: float) -> Iterator[T]:
    start = last = time.monotonic()
    for done, item in enumerate(items):
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            of = f"/{total}" if total is not None else ""
            print(f"{description}: {done}{of} done, {now - start:.0f} s", file=sys.stderr, flush=True)
        yield item
