"""Executors: the local one and Ray (a local Ray of 2 CPUs, started once for this module) do the same
work. A run on Ray reaches the local run's subset with bit-identical statistics; a worker killed
midway is replaced and its task run again, and no member is counted twice."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from test_run import BASE, _config, _member_probs

from subsetsearch.errors import InputError
from subsetsearch.executors import ExecutorError, LocalExecutor, ScoreTask, TrainTask, make_executor
from subsetsearch.executors import base as executor_base
from subsetsearch.internal.ledger import Ledger
from subsetsearch.pipeline.classify import ShardScore
from subsetsearch.pipeline.config import parse_config
from subsetsearch.pipeline.search import Search
from subsetsearch.pipeline.task import Task, TaskWorkload
from subsetsearch.stats import EnsembleStats

ray = pytest.importorskip("ray")

# Two runs of three checkpoints each: six members; build_up scores the unselected pool twice.
ENSEMBLE = {"kind": "combined", "runs": 2, "start": 1, "stop": 3}


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for this module's tests; shut down after them. Its workers import
    this module's workloads as the test session does (tests/ and the repository on their path)."""
    here = Path(__file__).resolve().parent
    path = os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        _temp_dir=temp,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield
    ray.shutdown()


def _same_stats(a: Path, b: Path) -> bool:
    return EnsembleStats.load(a).equals(EnsembleStats.load(b))


def _merged(task: Task, tasks: list[ScoreTask], executor, workload) -> tuple[EnsembleStats, list[str]]:
    """The tasks' results merged into one accumulator, as the run's driver merges them."""
    stats, seen = EnsembleStats(len(task.pool), task.splits.num_classes), []

    def merge(task: ScoreTask, result: ShardScore) -> None:
        stats.merge(result.stats, index=task.rows)
        seen.append(task.name)

    executor.score(workload, tasks, merge)
    return stats, seen


def test_ray_run_gives_the_local_subset_bit_for_bit(tmp_path, local_ray):
    local = Search(_config(ensemble=ENSEMBLE), tmp_path / "local").run()
    remote_config = _config(ensemble=ENSEMBLE, executor={"name": "ray", "workers": 2})
    search = Search(remote_config, tmp_path / "ray")
    remote = search.run()
    assert np.array_equal(local.subset.index, remote.subset.index)
    assert np.array_equal(local.subset.score, remote.subset.score, equal_nan=True)
    for i in (1, 2):
        step = f"iter_{i:02d}"
        assert _same_stats(tmp_path / "local" / step / "stats.npz", tmp_path / "ray" / step / "stats.npz")
        stats = EnsembleStats.load(tmp_path / "ray" / step / "stats.npz")
        scored = stats.member_counts > 0
        assert np.all(stats.member_counts[scored] == 6)  # every member once on every scored row
        # the statistics hold exactly the members' predictions recomputed from their checkpoints
        rows = np.flatnonzero(scored)
        probs = _member_probs(search, i, rows).astype(np.float64)
        np.testing.assert_allclose(stats.mean_probs(rows), probs.mean(axis=0), atol=1e-8)
        with np.load(tmp_path / "ray" / step / "votes.npz") as votes:
            assert np.array_equal(votes["votes"], np.argmax(probs, axis=2))
        metrics = json.loads((tmp_path / "ray" / step / "metrics.json").read_text())
        assert metrics["executor"] == "ray (2 workers)"
    remote_variants = {v.name: v for v in remote.variants}
    for variant in local.variants:
        assert remote_variants[variant.name].accuracies == variant.accuracies


def test_a_factory_network_trains_on_ray_workers_as_it_does_locally(tmp_path, local_ray):
    """Each worker loads the user's script (model.factory) itself: the same network, the same subset."""
    config = {
        **BASE,
        "model": {"factory": f"{Path(__file__).with_name('user_models.py')}:tiny_net"},
        "ensemble": ENSEMBLE,
    }
    local = Search(parse_config(config), tmp_path / "local").run()
    remote = Search(parse_config({**config, "executor": {"name": "ray", "workers": 2}}), tmp_path / "ray").run()
    assert np.array_equal(local.subset.index, remote.subset.index)
    assert np.array_equal(local.subset.score, remote.subset.score, equal_nan=True)
    assert _same_stats(tmp_path / "local" / "iter_02" / "stats.npz", tmp_path / "ray" / "iter_02" / "stats.npz")
    assert [v.accuracies for v in local.variants] == [v.accuracies for v in remote.variants]
    metrics = json.loads((tmp_path / "ray" / "iter_02" / "metrics.json").read_text())
    assert metrics["executor"] == "ray (2 workers)"


def test_ray_run_of_an_ordered_function_gives_the_local_dynamics_bit_for_bit(tmp_path, local_ray):
    """Ray returns a shard's units in any order; dyn_unc's are merged in epoch order all the same."""
    from subsetsearch.dynamics import TrainingDynamics

    changes = {"search": {"scheme": "compress", "budgets": [0.3], "function": "dyn_unc", "window": 2}}
    changes["ensemble"] = {"kind": "checkpoints", "start": 1, "stop": 3}
    local = Search(_config(**changes), tmp_path / "local").run()
    remote = Search(_config(**changes, executor={"name": "ray", "workers": 2}), tmp_path / "ray").run()
    a = TrainingDynamics.load(tmp_path / "local" / "iter_00" / "dynamics.npz")
    b = TrainingDynamics.load(tmp_path / "ray" / "iter_00" / "dynamics.npz")
    b.metadata = a.metadata  # the ledgers list the units in the order they arrived
    assert a.equals(b)
    assert np.array_equal(local.subset.index, remote.subset.index)


class _KillOnce:
    """A workload that kills its own worker process the first time it meets ``victim``."""

    def __init__(self, inner: TaskWorkload, victim: str, marker: Path) -> None:
        self.inner, self.victim, self.marker = inner, victim, marker

    def setup(self, threads):
        self.inner.setup(threads)

    def _maybe_die(self, task) -> None:
        if task.name == self.victim and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    def train(self, task: TrainTask) -> float:
        self._maybe_die(task)
        return self.inner.train(task)

    def score(self, task: ScoreTask) -> ShardScore:
        self._maybe_die(task)
        return self.inner.score(task)


def _trained_search(tmp_path: Path) -> tuple[Task, np.ndarray]:
    """A compress run's step 0 trained locally (checkpoints on disk), as its task, and its pool rows."""
    config = _config(ensemble=ENSEMBLE, search={"scheme": "compress", "budgets": [0.3]})
    search = Search(config, tmp_path / "run")
    search.task.prepare()
    search.claim_run_dir()
    rows = np.arange(len(search.task.pool))
    with LocalExecutor() as executor:
        executor.train(TaskWorkload(search.task), [TrainTask(0, r, rows) for r in range(2)])
    return search.task, rows


def _score_tasks(task: Task, rows: np.ndarray, shard_rows: int) -> list[ScoreTask]:
    shards = executor_base.score_shards(len(rows), shard_rows)
    return [
        ScoreTask(0, member.name, s, rows[shard]) for member in task.member_files(0) for s, shard in enumerate(shards)
    ]


def test_a_killed_worker_is_replaced_and_no_member_counted_twice(tmp_path, local_ray):
    search, rows = _trained_search(tmp_path)
    tasks = _score_tasks(search, rows, shard_rows=128)  # 6 members x 4 shards
    expected, _ = _merged(search, tasks, LocalExecutor(), TaskWorkload(search))

    victim = tasks[len(tasks) // 2].name
    marker = tmp_path / "killed"
    workload = _KillOnce(TaskWorkload(search), victim, marker)
    executor = make_executor("ray", workers=2)
    got, seen = _merged(search, tasks, executor, workload)
    executor.close()
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker process died
    assert executor.retried == 1
    assert sorted(seen) == sorted(t.name for t in tasks)  # each task merged exactly once
    assert np.all(got.member_counts == 6)
    assert got.equals(expected)


def test_a_worker_killed_while_training_resumes_the_run(tmp_path, local_ray):
    config = _config(ensemble={"kind": "checkpoints", "start": 1, "stop": 3})
    search = Search(config, tmp_path / "run")
    search.task.prepare()
    search.claim_run_dir()
    rows = np.arange(len(search.task.pool))
    marker = tmp_path / "killed"
    workload = _KillOnce(TaskWorkload(search.task), "iter_00/run_0", marker)
    with make_executor("ray", workers=1) as executor:
        seconds = executor.train(workload, [TrainTask(0, 0, rows)])
        assert executor.retried == 1
    assert list(seconds) == ["iter_00/run_0"] and seconds["iter_00/run_0"] > 0
    fresh = Search(config, tmp_path / "again")
    fresh.task.prepare()
    fresh.claim_run_dir()
    fresh.task.train_member_run(TrainTask(0, 0, rows))
    for epoch in (1, 2, 3):  # the retried run's checkpoints are those of an uninterrupted run
        name = f"iter_00/members/run_0/epoch_{epoch:03d}.safetensors"
        from safetensors.numpy import load_file

        a, b = load_file(str(tmp_path / "run" / name)), load_file(str(tmp_path / "again" / name))
        assert all(np.array_equal(a[k], b[k]) for k in a)


class _AlwaysDies:
    def setup(self, threads):
        pass

    def score(self, task):
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_task_that_always_kills_its_worker_gives_up_with_one_message(local_ray):
    from subsetsearch.executors.ray import RayExecutor

    merged = []
    task = ScoreTask(0, "m", 0, np.arange(4))
    with RayExecutor(workers=1, max_retries=1) as executor, pytest.raises(ExecutorError) as error:
        executor.score(_AlwaysDies(), [task], lambda task, result: merged.append(task))
    assert "task iter_00/m shard 0 failed 2 times" in str(error.value) and "\n" not in str(error.value)
    assert merged == []


class _Raises:
    def setup(self, threads):
        pass

    def score(self, task):
        raise InputError("member file 'm' is broken; replace it")


def _ignore(task, result) -> None:
    pass


def test_a_worker_the_cluster_cannot_place_is_one_line(local_ray):
    task = ScoreTask(0, "m", 0, np.arange(3))
    with make_executor("ray", gpus_per_worker=1) as executor, pytest.raises(ExecutorError) as error:
        executor.score(_Raises(), [task], _ignore)
    assert str(error.value) == "a worker asks for 1 GPUs but the Ray cluster has 0; lower executor.gpus_per_worker"


def test_a_task_error_comes_back_as_itself(local_ray):
    with make_executor("ray", workers=1) as executor, pytest.raises(InputError, match="is broken; replace it"):
        executor.score(_Raises(), [ScoreTask(0, "m", 0, np.arange(3))], _ignore)


def test_local_executor_runs_each_task_once_in_order():
    calls = []

    class Echo:
        def setup(self, threads):
            calls.append(("setup", threads))

        def train(self, task):
            calls.append(task.name)
            return float(task.run)

    tasks = [TrainTask(0, r, np.arange(3)) for r in range(3)]
    assert LocalExecutor().train(Echo(), tasks) == {"iter_00/run_0": 0.0, "iter_00/run_1": 1.0, "iter_00/run_2": 2.0}
    assert calls == [("setup", None), "iter_00/run_0", "iter_00/run_1", "iter_00/run_2"]


def test_shards_cover_the_rows_once_in_whole_inference_batches():
    from subsetsearch.train.trainer import INFERENCE_BATCH

    assert executor_base.SHARD_ROWS % INFERENCE_BATCH == 0
    shards = executor_base.score_shards(20000)
    assert [(s.start, s.stop) for s in shards] == [(0, 8192), (8192, 16384), (16384, 20000)]
    assert executor_base.score_shards(0) == []


def test_a_run_killed_while_scoring_resumes_from_its_last_member_shard_pair(tmp_path, monkeypatch):
    """Scoring is stopped after 7 of 18 (member, shard) pairs; the rerun adds only the other 11."""
    monkeypatch.setattr("subsetsearch.pipeline.classify.score_shards", lambda n: executor_base.score_shards(n, 256))
    config = _config(ensemble=ENSEMBLE, search={"scheme": "compress", "budgets": [0.3]})
    Search(config, tmp_path / "whole").run()

    merged = []
    real_score = LocalExecutor.score

    class Stop(Exception):
        pass

    def stopping_score(self, workload, tasks, on_done):
        def counted(task, result):
            on_done(task, result)
            merged.append(task.name)
            if len(merged) == 7 and stop_after_seven:
                raise Stop

        return real_score(self, workload, tasks, counted)

    monkeypatch.setattr(LocalExecutor, "score", stopping_score)
    stop_after_seven = True
    with pytest.raises(Stop):
        Search(config, tmp_path / "cut").run()
    ledger = Ledger.of(EnsembleStats.load(tmp_path / "cut" / "iter_00" / "stats.npz").metadata)
    assert ledger.units(3) == 7  # 600 rows: 3 shards a member
    assert ledger.members == ["run_0/epoch_001", "run_0/epoch_002"]
    assert ledger.pairs == {("run_0/epoch_003", 0)}

    merged.clear()
    stop_after_seven = False
    Search(config, tmp_path / "cut").run()
    assert len(merged) == 18 - 7
    assert _same_stats(tmp_path / "whole" / "iter_00" / "stats.npz", tmp_path / "cut" / "iter_00" / "stats.npz")
    with np.load(tmp_path / "whole/iter_00/votes.npz") as a, np.load(tmp_path / "cut/iter_00/votes.npz") as b:
        assert all(np.array_equal(a[key], b[key]) for key in ("rows", "names", "votes"))


def test_a_run_resumes_on_another_executor(tmp_path):
    """Where a run computes is not part of its config's identity."""
    config = _config(search={"scheme": "random", "budgets": [0.3]})
    Search(config, tmp_path / "run").run()
    moved = _config(search={"scheme": "random", "budgets": [0.3]}, executor={"name": "ray", "address": "auto"})
    assert Search(moved, tmp_path / "run").check_run_dir() is True


def test_ray_missing_is_one_line(monkeypatch):
    from subsetsearch.executors.ray import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ExecutorError, match=r"pip install 'subsetsearch\[ray\]'"):
        RayExecutor().score(_Raises(), [ScoreTask(0, "m", 0, np.arange(3))], _ignore)


def test_a_cluster_that_refuses_the_client_is_one_line_naming_the_token(monkeypatch):
    """Ray reports a refused token only as "Failed to connect" (seen with Ray 2.60 and a wrong token)."""
    import types

    from subsetsearch.executors.ray import RayExecutor

    def refuse(**kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379\nmore lines")

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=refuse)
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(ExecutorError) as caught:
        RayExecutor(address="10.0.0.1:6379").score(_Raises(), [ScoreTask(0, "m", 0, np.arange(3))], _ignore)
    assert str(caught.value) == (
        "could not start or reach 10.0.0.1:6379: Failed to connect to Ray cluster at 10.0.0.1:6379; check the "
        "address, and that this client holds the cluster's token with RAY_AUTH_MODE=token set "
        "(docs: Scale out, Ray's token authentication)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "spark"], "--executor 'spark': choose local or ray"),
        (["--executor", "local", "--ray-address", "auto"], "--ray-address needs --executor ray"),
    ],
)
def test_bad_executor_options_are_one_line(tmp_path, capsys, args, message):
    from subsetsearch.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("search: {function: entropy}\n")
    assert main(["run", str(config), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_executor_config_keys_are_checked():
    with pytest.raises(InputError, match=r"executor.cpus_per_worker"):
        _config(executor={"name": "ray", "cpus_per_worker": 0})
    with pytest.raises(InputError, match=r"executor.name"):
        _config(executor={"name": "dask"})


def test_a_study_takes_its_executor_from_the_command_line_and_resumes_on_another(tmp_path):
    import yaml

    from subsetsearch.pipeline.study import claim_study_dir, load_study_config

    study = {
        "study": "outliers",
        "name": "s",
        "trials": 1,
        "base": {"data": {"dataset": "digits"}, "search": {"function": "entropy"}},
        "cells": {"a": {"search": {"skip_top": 0.0}}},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    local = load_study_config(path)
    remote = load_study_config(path, "ray", "ray://head:10001")
    assert local.cell_config("a", 0).executor.name == "local"
    assert remote.cell_config("a", 0).executor.model_dump() == {
        "name": "ray",
        "address": "ray://head:10001",
        "workers": None,
        "cpus_per_worker": 1.0,
        "gpus_per_worker": None,
    }
    claim_study_dir(local, tmp_path / "dir")
    claim_study_dir(remote, tmp_path / "dir")  # where it runs is not what it computes: accepted
    changed = load_study_config(path)
    changed.base["search"]["function"] = "variation_ratios"
    with pytest.raises(InputError, match="holds another study"):
        claim_study_dir(changed, tmp_path / "dir")


def test_ray_detection_run_gives_the_local_subset_and_scores_bit_for_bit(tmp_path, local_ray):
    """Detection scoring goes through the executor as classification's does: chunks of images, each
    scored by every member on a worker, merged by the driver."""
    from test_detect_run import _config as detection_config

    from subsetsearch.pipeline.config import parse_config
    from subsetsearch.train.data import FASHION_MNIST_DIR

    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("Fashion-MNIST missing (make test installs it)")
    changes = {"search": {"scheme": "auto_duplication", "budgets": [0.2, 0.4]}, "compare": ["random"]}
    local = Search(parse_config(detection_config(**changes)), tmp_path / "local").run()
    remote_config = parse_config(detection_config(**changes, executor={"name": "ray", "workers": 2}))
    remote = Search(remote_config, tmp_path / "ray").run()
    assert np.array_equal(local.subset.index, remote.subset.index)
    with (
        np.load(tmp_path / "local" / "iter_01" / "scores.npz") as a,
        np.load(tmp_path / "ray" / "iter_01" / "scores.npz") as b,
    ):
        assert np.array_equal(a["scores"], b["scores"]) and np.isfinite(a["scores"]).all()  # the whole pool
    metrics = json.loads((tmp_path / "ray" / "iter_01" / "metrics.json").read_text())
    assert metrics["executor"] == "ray (2 workers)"
    remote_variants = {v.name: v for v in remote.variants}
    for variant in local.variants:
        assert remote_variants[variant.name].metrics == variant.metrics
