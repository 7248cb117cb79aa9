"""The default executor: every task in this process, one after another (torch uses every core)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from subsetsearch.executors.base import Executor, Workload


class LocalExecutor(Executor):
    """Runs tasks in process, in order (benchmarks/scale.py (b) measures it against Ray)."""

    name = "local"

    def run(self, workload: Workload, method: str, tasks: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        if tasks:
            workload.setup(None)
        for task in tasks:
            yield task, getattr(workload, method)(task)
