"""Ray executor: tasks on a pool of Ray actors, each holding the workload (data loaded once).

``pip install 'subsetsearch[ray]'``. With no address a local Ray is started on this machine and
shut down again by :meth:`RayExecutor.close`; with ``address`` (``"auto"``, ``"ray://head:10001"``)
the executor joins that cluster and leaves it running. Workers read and write the run directory,
so on a cluster it must be on storage every node sees.

A worker that dies (killed, out of memory, node lost) is replaced and its task run again; the
driver merges a task's result only when it arrives, so no member is ever counted twice.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator, Sequence
from typing import Any

from subsetsearch.executors.base import Executor, ExecutorError, Workload


class _Worker:
    """A Ray actor: sets up the workload once, then runs its tasks."""

    def __init__(self, workload: Workload, threads: int) -> None:
        from subsetsearch.internal.malloc import tune_malloc

        tune_malloc()  # before the workload imports torch
        self.workload = workload
        self.workload.setup(threads)

    def run(self, method: str, task: Any) -> Any:
        return getattr(self.workload, method)(task)


class RayExecutor(Executor):
    """Runs tasks on Ray actors.

    Parameters
    ----------
    address : str, optional
        An existing cluster's address; None starts a local Ray (every CPU of this machine).
    workers : int, optional
        Actors to start; default: as many as the cluster's CPUs (or GPUs, where workers take GPUs) allow.
    cpus_per_worker : float, default 1.0
        CPUs each actor reserves; its torch threads are this rounded down (at least 1) unless the
        config's ``train.threads`` says otherwise. Fractions are allowed.
    gpus_per_worker : float, optional
        GPUs each actor reserves; default 1 where the cluster has GPUs, else 0.
    max_retries : int, default 3
        How often one task is run again after its worker died.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float | None = None,
        max_retries: int = 3,
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if cpus_per_worker <= 0:
            raise ValueError(f"cpus_per_worker must be positive, got {cpus_per_worker}")
        self.address = address
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.max_retries = max_retries
        self._started_ray = False
        self._size: int | None = None
        self._pool: list = []
        self._workload: Workload | None = None
        #: Tasks run again because their worker died (over this executor's life).
        self.retried = 0

    def _ray(self):
        try:
            import ray
        except ImportError:
            raise ExecutorError("the ray executor needs Ray; install it: pip install 'subsetsearch[ray]'") from None
        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            try:
                if self.address:
                    ray.init(address=self.address, **options)
                else:
                    ray.init(num_cpus=os.cpu_count(), **options)
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = self.address or "a local Ray"
                hint = ""
                if self.address:  # Ray says only "Failed to connect" when the cluster refuses the token
                    hint = (
                        "; check the address, and that this client holds the cluster's token with "
                        "RAY_AUTH_MODE=token set (docs: Scale out, Ray's token authentication)"
                    )
                raise ExecutorError(f"could not start or reach {where}: {str(error).splitlines()[0]}{hint}") from None
            self._started_ray = not self.address
        return ray

    def _resources(self, ray) -> tuple[float, float, int]:
        """(CPUs, GPUs) per actor and the number of actors."""
        total = ray.cluster_resources()
        gpus = self.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if total.get("GPU", 0) >= 1 else 0.0
        for kind, need in (("CPU", self.cpus_per_worker), ("GPU", gpus)):
            if need > total.get(kind, 0):  # such a worker would wait forever for a place
                raise ExecutorError(
                    f"a worker asks for {need:g} {kind}s but the Ray cluster has {total.get(kind, 0):g}; "
                    f"lower executor.{kind.lower()}s_per_worker"
                )
        if self.workers is not None:
            size = self.workers
        elif gpus > 0:
            size = int(total.get("GPU", 0) // gpus)
        else:
            size = int(total.get("CPU", 1) // self.cpus_per_worker)
        return self.cpus_per_worker, gpus, max(1, size)

    def describe(self) -> str:
        return f"ray ({self._size} workers)" if self._size else "ray"

    def _actors(self, ray, workload: Workload, wanted: int) -> list:
        """Up to ``wanted`` actors holding ``workload``; kept from call to call while the workload is the same."""
        if self._workload is not workload:
            self._kill_actors()
            self._workload, self._shared = workload, ray.put(workload)
        cpus, gpus, size = self._resources(ray)
        self._size = size
        self._actor_class = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=0, max_task_retries=0)(_Worker)
        self._threads = max(1, int(cpus))
        while len(self._pool) < min(size, wanted):
            self._pool.append(self._actor_class.remote(self._shared, self._threads))
        return list(self._pool)

    def run(self, workload: Workload, method: str, tasks: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        if not tasks:
            return
        ray = self._ray()
        idle = self._actors(ray, workload, len(tasks))
        queue = collections.deque(tasks)
        attempts: collections.Counter = collections.Counter()
        in_flight: dict = {}
        while queue or in_flight:
            while idle and queue:
                actor, task = idle.pop(), queue.popleft()
                in_flight[actor.run.remote(method, task)] = (actor, task)
            (ready,), _ = ray.wait(list(in_flight), num_returns=1)
            actor, task = in_flight.pop(ready)
            try:
                result = ray.get(ready)
            except ray.exceptions.RayActorError as error:  # the worker died: replace it, run the task again
                if getattr(error, "actor_init_failed", False):  # setting up the work failed: not worth a retry
                    raise ExecutorError(f"a Ray worker could not set up the work: {_last_line(error)}") from None
                attempts[task.name] += 1
                if attempts[task.name] > self.max_retries:
                    raise ExecutorError(
                        f"task {task.name} failed {attempts[task.name]} times, each time its Ray worker died "
                        f"({str(error).splitlines()[0]})"
                    ) from None
                ray.kill(actor)
                self._pool.remove(actor)
                replacement = self._actor_class.remote(self._shared, self._threads)
                self._pool.append(replacement)
                idle.append(replacement)
                queue.appendleft(task)
                self.retried += 1
                continue
            except ray.exceptions.RayTaskError as error:  # the task itself raised: raise it here
                raise (error.cause or ExecutorError(f"task {task.name} failed: {_last_line(error)}")) from None
            idle.append(actor)
            yield task, result

    def _kill_actors(self) -> None:
        if self._pool:
            import ray

            for actor in self._pool:
                ray.kill(actor)
        self._pool = []

    def close(self) -> None:
        self._kill_actors()
        self._workload = None
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False


def _last_line(error: Exception) -> str:
    """The innermost message of a Ray error (its last non-empty line), without terminal colours."""
    import re

    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
