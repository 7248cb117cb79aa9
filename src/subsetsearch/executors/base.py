"""The executor interface and the units of work it moves (docs/architecture.md, "Executors")."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from subsetsearch.internal.shards import row_shards

#: Rows of one scoring shard: a multiple of the trainer's inference batch (1,024), so a sharded
#: member sees the very batches an unsharded one does and its predictions are the same bits.
SHARD_ROWS = 8192


class ExecutorError(RuntimeError):
    """Work could not be done: a worker died more often than the executor retries, or Ray is missing."""


@dataclass(frozen=True)
class TrainTask:
    """Train acquisition run ``run`` of step ``iteration`` on pool rows ``train_rows``."""

    iteration: int
    run: int
    train_rows: np.ndarray

    @property
    def name(self) -> str:
        return f"iter_{self.iteration:02d}/run_{self.run}"


@dataclass(frozen=True)
class ScoreTask:
    """Score pool ``rows`` (shard ``shard`` of the rows step ``iteration`` scores) with ``member``:
    one member of the step's ensemble by name, or every member together
    (:data:`~subsetsearch.internal.ledger.ALL_MEMBERS`, where a score needs them all at once, as a
    detection image's does). ``keep_maps``: return the per-location maps too (a figure's few images)."""

    iteration: int
    member: str
    shard: int
    rows: np.ndarray
    keep_maps: bool = False

    @property
    def name(self) -> str:
        return f"iter_{self.iteration:02d}/{self.member} shard {self.shard}"


class Workload(Protocol):
    """What an executor runs. ``setup`` is called once per worker before its first task (and must
    do nothing the second time); the workload is pickled to reach a remote worker."""

    def setup(self, threads: int | None) -> None: ...

    def train(self, task: TrainTask) -> float: ...

    def score(self, task: ScoreTask) -> Any: ...


def score_shards(num_rows: int, shard_rows: int = SHARD_ROWS) -> list[slice]:
    """Positions 0..num_rows-1 cut into consecutive shards of ``shard_rows`` (the last may be shorter)."""
    return row_shards(num_rows, shard_rows)


class Executor(abc.ABC):
    """Trains and scores acquisition members; results come back as tasks finish, in any order."""

    name: str = "executor"

    def train(
        self, workload: Workload, tasks: Sequence[TrainTask], on_done: Callable[[TrainTask, float], None] | None = None
    ) -> dict[str, float]:
        """Train every task's run (a run already trained returns at once); seconds per task name."""
        seconds = {}
        for task, result in self.run(workload, "train", tasks):
            seconds[task.name] = result
            if on_done is not None:
                on_done(task, result)
        return seconds

    def score(self, workload: Workload, tasks: Sequence[ScoreTask], on_done: Callable[[ScoreTask, Any], None]) -> None:
        """Score every task; ``on_done(task, result)`` merges each result as it arrives (in any order,
        each exactly once)."""
        for task, result in self.run(workload, "score", tasks):
            on_done(task, result)

    @abc.abstractmethod
    def run(self, workload: Workload, method: str, tasks: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        """Yield (task, ``getattr(workload, method)(task)``) for every task, each exactly once."""

    def describe(self) -> str:
        """A few words for progress lines."""
        return self.name

    def close(self) -> None:  # noqa: B027 (most executors hold nothing to release)
        """Release workers (and a Ray started by this executor)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
