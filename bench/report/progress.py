"""The rich-backed progress reporter the CLI hands to the bench loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from bench.measure.state import Reporter


class RichReporter(Reporter):
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        task_id = self.progress.add_task(description, total=total)
        try:
            yield lambda n: self.progress.advance(task_id, n)
        finally:
            self.progress.update(task_id, completed=total)

    def note(self, message: str) -> None:
        self.progress.console.print(message)
