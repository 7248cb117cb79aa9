"""The classification task of ``subsetsearch run``: image classifiers on a labeled pool.

Members are checkpoints of classifier training runs; each (member, shard of the scored rows)
is one unit of scoring work, whose statistics merge exactly into the step's
:class:`~subsetsearch.stats.EnsembleStats` (``iter_NN/stats.npz``, with its ledger) and whose
votes go to ``iter_NN/votes.npz``. Subset models are judged by test accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from subsetsearch.acquisition import NEEDS_LABELS, NEEDS_ORDER, acquire
from subsetsearch.dynamics import DYNAMICS_FUNCTIONS, TrainingDynamics
from subsetsearch.executors import ScoreTask, score_shards
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.files import InputError
from subsetsearch.internal.ledger import Ledger
from subsetsearch.pipeline.config import RunConfig
from subsetsearch.pipeline.search import (
    Search,
    Seed,
    StepScoring,
    TaskInfo,
    VariantSpec,
    build_networks,
    derive_seed,
)
from subsetsearch.rundir import DYNAMICS, STATS, VOTES, DatasetRecord, MemberVotes
from subsetsearch.stats import EnsembleStats
from subsetsearch.train import data as datasets

if TYPE_CHECKING:
    from subsetsearch.train.trainer import ProgressFn, RunRecord, TrainSpec


def load_splits(config: RunConfig) -> datasets.Splits:
    """The pool, validation and test sets a config asks for, with the names of their classes."""
    cfg = config.data
    seed = derive_seed(config.seed, Seed.DATA)
    test: datasets.LabeledImages | None = None
    folder_classes: list[str] | None = None
    if cfg.dataset == "fashion_mnist":
        train, test = datasets.load_fashion_mnist(cfg.path)
        name = "fashion_mnist"
    elif cfg.dataset == "digits":
        train, name = datasets.load_digits_images(), "digits"
    elif cfg.dataset == "arrays":
        train, name = datasets.load_arrays(cfg.path, cfg.labels, lazy=cfg.on_disk), str(cfg.path)
        if cfg.test_path is not None:
            test = datasets.load_arrays(cfg.test_path, cfg.test_labels, lazy=cfg.on_disk)
    else:
        train, folder_classes = datasets.load_image_folder(cfg.path, cfg.image_size)
        name = str(cfg.path)
        if cfg.test_path is not None:
            test, _ = datasets.load_image_folder(cfg.test_path, cfg.image_size)
    if test is None:
        rest, held = datasets.stratified_split(train.y, cfg.test_fraction, seed)
        train, test = train.take(rest), train.take(held)
    if test.x.shape[1:] != train.x.shape[1:]:
        raise InputError(f"test images are {test.x.shape[1:]} but training images {train.x.shape[1:]}; give one size")
    train = datasets.subsample(train, cfg.limit, seed + 1)
    test = datasets.subsample(test, cfg.test_limit, seed + 2)
    validation = datasets.LabeledImages(train.x[:0], train.y[:0])
    if cfg.validation_fraction > 0:
        rest, held = datasets.stratified_split(train.y, cfg.validation_fraction, seed + 3)
        train, validation = train.take(rest), train.take(held)
    num_classes = int(max(train.y.max(), test.y.max())) + 1
    if len(np.unique(train.y)) < 2:
        raise InputError(f"the pool of {name} holds a single class; give at least two")
    if cfg.dataset == "fashion_mnist":
        names = datasets.FASHION_MNIST_CLASSES
    elif folder_classes is not None and len(folder_classes) == num_classes:
        names = tuple(folder_classes)
    else:
        names = tuple(str(c) for c in range(num_classes))
    return datasets.Splits(name, train, validation, test, num_classes, names)


@dataclass
class ShardScore:
    """One member on one shard: its statistics over the shard's rows, each row's predicted class,
    the seconds it took, and (for a label-based function) its label statistics over the rows."""

    stats: EnsembleStats
    votes: np.ndarray
    seconds: float
    dynamics: TrainingDynamics | None = None


@dataclass
class Variant:
    """Test results of the classifiers trained on one subset."""

    name: str
    size: int
    unique: int
    accuracies: list[float]
    ensemble_accuracy: float
    train_seconds: list[float]
    precision: str

    def to_json(self) -> dict:
        sd = float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else None
        return {
            "subset_size": self.size,
            "unique_samples": self.unique,
            "test_accuracy": self.accuracies,
            "test_accuracy_mean": float(np.mean(self.accuracies)),
            "test_accuracy_sd": sd,  # sample standard deviation (ddof=1) over the models
            "models": len(self.accuracies),
            "ensemble_test_accuracy": self.ensemble_accuracy,
            "train_seconds": self.train_seconds,
            "precision": self.precision,
        }


class StatsScoring(StepScoring):
    """A classification step's scoring: (member, shard) units merged into ``stats.npz``, whose
    metadata holds the ledger, and the members' votes in ``votes.npz``.

    A label-based function (``el2n``, ``forgetting``, ...) also keeps a
    :class:`~subsetsearch.dynamics.TrainingDynamics` in ``dynamics.npz`` with its own ledger, saved
    before the statistics, so it holds at least the units they hold. A unit the statistics hold and
    the dynamics lack (a run killed between the two saves) is scored again for the dynamics only.
    Ordered functions take each shard's members in ensemble order: a unit that arrives early (Ray
    finishes units in any order) waits in memory until the units before it are merged.
    """

    unit_label = "(member, shard) pairs"

    def __init__(self, search: ClassificationSearch, iteration: int, score_rows: np.ndarray) -> None:
        n, c = search.info.pool_size, search.splits.num_classes
        self.shards = score_shards(len(score_rows))
        super().__init__(len(self.shards), n * c)
        self.iteration, self.score_rows = iteration, score_rows
        self.names = [member.name for member in search.member_files(iteration)]
        self.path = search.step_dir(iteration) / STATS
        self.votes_path = search.step_dir(iteration) / VOTES
        self.stats = EnsembleStats.load(self.path) if self.path.is_file() else EnsembleStats(n, c)
        self.ledger = Ledger.of(self.stats.metadata)
        self.votes = MemberVotes.load(self.votes_path, score_rows, self.names, self.ledger.started())
        self.function = search.config.search.function
        self.labels = search.splits.pool.y if self.function in NEEDS_LABELS else None
        self.dynamics, self.dynamics_ledger, self._early = None, Ledger(), {}
        if self.function in DYNAMICS_FUNCTIONS:
            self.dynamics_path = search.step_dir(iteration) / DYNAMICS
            if self.dynamics_path.is_file():
                self.dynamics = TrainingDynamics.load(self.dynamics_path)
            else:
                window, ordered = search.config.search.window, self.function in NEEDS_ORDER
                self.dynamics = TrainingDynamics(search.splits.pool.y, num_classes=c, window=window, ordered=ordered)
            self.dynamics_ledger = Ledger.of(self.dynamics.metadata)

    def tasks(self) -> list[ScoreTask]:
        return [
            ScoreTask(self.iteration, name, s, self.score_rows[shard])
            for name in self.names
            for s, shard in enumerate(self.shards)
        ]

    def todo(self) -> list[ScoreTask]:
        """Units either the statistics or the dynamics lack."""
        return [task for task in self.tasks() if not self._held(task)]

    def _held(self, task: ScoreTask) -> bool:
        held = self.ledger.holds(task.member, task.shard)
        return held and (self.dynamics is None or self.dynamics_ledger.holds(task.member, task.shard))

    def merge(self, task: ScoreTask, result: ShardScore) -> None:
        if not self.ledger.holds(task.member, task.shard):
            self.stats.merge(result.stats, index=task.rows)
            self.votes.set(task.member, self.shards[task.shard], result.votes)
        if self.dynamics is None or self.dynamics_ledger.holds(task.member, task.shard):
            return
        self._early[(task.shard, task.member)] = (task, result.dynamics)
        if self.dynamics.ordered:  # merge what is next in ensemble order, as far as it goes
            for name in self.names:
                if self.dynamics_ledger.holds(name, task.shard):
                    continue
                if (task.shard, name) not in self._early:
                    break
                self._merge_dynamics(*self._early.pop((task.shard, name)))
        else:
            self._merge_dynamics(*self._early.pop((task.shard, task.member)))

    def _merge_dynamics(self, task: ScoreTask, dynamics: TrainingDynamics) -> None:
        self.dynamics.merge(dynamics, index=task.rows)
        self.dynamics_ledger.add(task.member, task.shard, num_shards=self.num_shards)

    def record(self, task: ScoreTask, result: ShardScore) -> None:
        if not self.ledger.holds(task.member, task.shard):
            super().record(task, result)

    def save(self) -> None:
        if self.dynamics is not None:  # first: the dynamics hold every unit the statistics hold, or more
            self.dynamics.metadata = self.dynamics_ledger.save_to(self.dynamics.metadata)
            self.dynamics.save(self.dynamics_path)
        self.votes.save(self.votes_path)  # then the votes: they hold every member the statistics hold
        self.stats.metadata = self.ledger.save_to(self.stats.metadata)
        self.stats.save(self.path)

    def scores(self) -> np.ndarray:
        if self.dynamics is not None:
            return acquire(self.dynamics, self.function)
        return acquire(self.stats, self.function, labels=self.labels)

    @property
    def saved(self) -> bool:
        return self.path.is_file()


class ClassificationSearch(Search):
    """A search over a labeled image pool with classifiers (see the module docstring)."""

    def prepare(self, threads: int | None = None) -> TaskInfo:
        from subsetsearch.internal.malloc import tune_malloc

        tune_malloc()  # before torch is imported
        from subsetsearch.train import trainer

        cfg = self.config
        trainer.set_threads(cfg.train.threads or threads)
        self.splits = splits = load_splits(cfg)
        self.device = trainer.resolve_device(cfg.train.device)
        mean, std = trainer.channel_stats(splits.pool.x)

        def tensors(part: datasets.LabeledImages) -> trainer.TensorData:
            return trainer.TensorData.build(part.x, part.y, mean, std, self.device)

        self.pool = tensors(splits.pool)
        self.validation = tensors(splits.validation) if len(splits.validation) else None
        self.test = tensors(splits.test)
        channels = splits.pool.x.shape[1]
        self.acq_net, self.subset_net, info = build_networks(cfg, channels, splits.num_classes, self.device)
        self._scoring_net, self._scoring_member = None, None
        self._member_order: dict[int, list[str]] = {}  # a step's member names, read once per worker
        return info(splits.name, len(splits.pool), len(splits.test))

    def dataset_record(self) -> DatasetRecord:
        return DatasetRecord(
            self.splits.name,
            list(self.splits.class_names),
            pool_labels=self.splits.pool.y,
            test_labels=self.splits.test.y,
        )

    def train_model(self, spec: TrainSpec, *, acquisition: bool, progress: ProgressFn | None) -> RunRecord:
        from subsetsearch.train import trainer

        network = self.acq_net if acquisition else self.subset_net
        return trainer.train_run(spec, network, self.pool, validation=self.validation, progress=progress)

    def step_scoring(self, iteration: int, score_rows: np.ndarray) -> StatsScoring:
        return StatsScoring(self, iteration, score_rows)

    def score_unit(self, task: ScoreTask) -> ShardScore:
        """One member's statistics and votes on one shard of pool rows."""
        from subsetsearch.train import trainer

        started = time.perf_counter()
        path = self.member_path(task.iteration, task.member)
        if self._scoring_member != path:  # a worker keeps its last member loaded
            self._scoring_net = self._scoring_net or self.acq_net.build(0)
            trainer.load_weights(self._scoring_net, path)
            self._scoring_member = path
        probs = trainer.predict(self.acq_net, self._scoring_net, self.pool, task.rows)
        stats = EnsembleStats(len(task.rows), self.splits.num_classes)
        stats.update(probs)
        dynamics = None
        search = self.config.search
        if search.function in DYNAMICS_FUNCTIONS:
            ordered = search.function in NEEDS_ORDER
            labels = self.splits.pool.y[task.rows]
            dynamics = TrainingDynamics(labels, num_classes=probs.shape[1], window=search.window, ordered=ordered)
            if task.iteration not in self._member_order:
                self._member_order[task.iteration] = [member.name for member in self.member_files(task.iteration)]
            position = self._member_order[task.iteration].index(task.member)
            dynamics.update(probs, position=position)  # the member's place in the ensemble's epoch order
        dtype = np.uint16 if probs.shape[1] < MemberVotes.UNSET else np.uint32
        votes = np.argmax(probs, axis=1).astype(dtype)
        return ShardScore(stats, votes, time.perf_counter() - started, dynamics)

    def evaluate(self, variant: VariantSpec) -> Variant:
        from subsetsearch.train import trainer

        cfg = self.config
        folder = self.run_dir / "models" / variant.name
        accuracies, seconds, probs_sum = [], [], None
        test_y = self.splits.test.y
        subset = variant.subset
        for k in range(cfg.subset_model.models):
            model_dir = folder / f"model_{k}"
            self.reporter.line(
                f"{variant.name}: training subset model {k + 1}/{cfg.subset_model.models} on {subset.size} samples"
            )
            spec = trainer.TrainSpec(
                model_dir,
                subset.training_rows(),
                seed=self.subset_model_seed(k),
                save_last=True,
                init_from=variant.init_from[k] if variant.init_from else None,
                lr=variant.lr,
            )
            record = self.train_model(
                spec, acquisition=False, progress=self.reporter.bar(f"{variant.name} model {k + 1}")
            )
            probs = self._test_probs(model_dir)
            accuracies.append(trainer.accuracy(probs, test_y))
            seconds.append(record.seconds)
            probs_sum = probs.astype(np.float64) if probs_sum is None else probs_sum + probs
        ensemble = trainer.accuracy(probs_sum, test_y)
        result = Variant(
            variant.name, subset.size, len(subset.index), accuracies, ensemble, seconds, self.subset_net.precision
        )
        self.reporter.line(
            f"{variant.name}: test accuracy {100 * np.mean(accuracies):.2f}%"
            + (f" (ensemble of {len(accuracies)}: {100 * ensemble:.2f}%)" if len(accuracies) > 1 else "")
        )
        return result

    def _test_probs(self, model_dir) -> np.ndarray:
        from subsetsearch.train import trainer

        path = model_dir / "test_probs.npy"
        if path.is_file():
            return np.load(path)
        model = self.subset_net.build(0)
        trainer.load_weights(model, model_dir / "last.safetensors")
        probs = trainer.predict(self.subset_net, model, self.test)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, probs)
        return probs

    def summary_lines(self, variants: list[Any]) -> list[str]:
        lines = [f"{'subset model':<14}{'samples':>9}{'test accuracy (mean ± sd)':>30}{'ensemble':>10}{'train s':>9}"]
        for v in variants:
            mean = 100 * np.mean(v.accuracies)
            n = len(v.accuracies)
            spread = f"{mean:.2f}% ± {100 * np.std(v.accuracies, ddof=1):.2f} (n={n})" if n > 1 else f"{mean:.2f}%"
            ensemble = f"{100 * v.ensemble_accuracy:.2f}%" if n > 1 else "-"
            lines.append(f"{v.name:<14}{v.size:>9}{spread:>30}{ensemble:>10}{np.mean(v.train_seconds):>9.1f}")
        return lines
