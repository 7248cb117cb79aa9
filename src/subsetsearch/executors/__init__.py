"""Where acquisition members are trained and scored.

One small interface (:class:`Executor`: train these runs; score these members over these sample
shards, handing each result back to be merged) with two implementations: :class:`LocalExecutor` (the default, in
this process) and ``RayExecutor`` (Ray actors, local or on a cluster; ``pip install
'subsetsearch[ray]'``). The work itself is a :class:`Workload` the pipeline supplies; executors
know nothing of models or files.
"""

from __future__ import annotations

from subsetsearch.executors.base import (
    Executor,
    ExecutorError,
    ScoreTask,
    TrainTask,
    Workload,
    score_shards,
)
from subsetsearch.executors.local import LocalExecutor

__all__ = [
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "ScoreTask",
    "TrainTask",
    "Workload",
    "make_executor",
    "score_shards",
]


def make_executor(
    name: str = "local",
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float | None = None,
) -> Executor:
    """The executor called ``name`` ("local" or "ray"); the other arguments are Ray's."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        from subsetsearch.executors.ray import RayExecutor

        return RayExecutor(
            address=address, workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker
        )
    raise ValueError(f"unknown executor {name!r}; choose local or ray")
