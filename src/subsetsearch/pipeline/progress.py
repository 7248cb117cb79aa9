"""What a long job tells its user: one line per stage, and progress bars on a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class Reporter:
    """Stage lines on stderr (always, unless quiet) and a live bar for batches when stderr is a terminal."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.started = time.perf_counter()
        self._progress = None
        self._task = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )

    def line(self, message: str) -> None:
        if self.quiet:
            return
        stamp = time.perf_counter() - self.started
        text = f"[{int(stamp) // 60:02d}:{int(stamp) % 60:02d}] {message}"
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def bar(self, label: str) -> Callable[[str, int, int], None] | None:
        """A progress callback (what, done, total) for one stage, or None off a terminal."""
        if self._progress is None:
            return None
        progress = self._progress
        if self._task is not None:
            progress.remove_task(self._task)
        task = self._task = progress.add_task(label, total=None)

        def update(what: str, done: int, total: int) -> None:
            # drawn at least once when finished, however fast the stage (rich draws 10 times a second)
            progress.update(task, description=f"{label}: {what}", completed=done, total=total, refresh=done == total)

        return update

    def __enter__(self) -> Reporter:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()
