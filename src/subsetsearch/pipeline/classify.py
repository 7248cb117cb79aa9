"""The classification task of ``subsetsearch run``: image classifiers on a labeled pool.

Members are checkpoints of classifier training runs; each (member, shard of the scored rows)
is one unit of scoring work, whose statistics merge exactly into the step's
:class:`~subsetsearch.stats.EnsembleStats` (``iter_NN/stats.npz``, with its ledger) and whose
votes go to ``iter_NN/votes.npz``. Subset models are judged by test accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subsetsearch.acquisition import NEEDS_LABELS, NEEDS_ORDER, acquire
from subsetsearch.dynamics import DYNAMICS_FUNCTIONS, TrainingDynamics
from subsetsearch.errors import InputError
from subsetsearch.executors import ScoreTask, score_shards
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.pipeline.config import RunConfig
from subsetsearch.pipeline.seeds import Seed, derive_seed
from subsetsearch.pipeline.task import StepScoring, Task, TaskInfo, VariantSpec, build_networks
from subsetsearch.report.gallery import gallery_rows, thumbnails
from subsetsearch.rundir import DatasetRecord, GalleryRecord, TrainingRunFiles, damaged, read_npz
from subsetsearch.state import DynamicsPart, MemberVotes, Part, ScoringState, StatsPart, VotesPart
from subsetsearch.stats import EnsembleStats
from subsetsearch.train import data as datasets

if TYPE_CHECKING:
    from subsetsearch.train.trainer import ProgressFn, RunRecord, TrainSpec


def load_splits(config: RunConfig) -> datasets.Splits:
    """The pool, validation and test sets a config asks for, with the names of their classes."""
    cfg = config.data
    seed = derive_seed(config.seed, Seed.DATA)
    loaded = datasets.DATASETS[cfg.dataset].load(cfg)
    train, test, name = loaded.train, loaded.test, loaded.name
    if len(train) == 0:
        raise InputError(f"{name} holds no image; give a dataset with images")
    if test is None:
        rest, held = datasets.stratified_split(train.y, cfg.test_fraction, seed)
        train, test = train.take(rest), train.take(held)
        if len(test) == 0:
            raise InputError(
                f"data.test_fraction: {name} holds one image per class, so none is left for a test set; give more "
                "images, or a test set (data.test_path)"
            )
    if len(test) == 0:
        raise InputError("data.test_path: the test set holds no image; give one with images")
    if test.x.shape[1:] != train.x.shape[1:]:
        raise InputError(f"test images are {test.x.shape[1:]} but training images {train.x.shape[1:]}; give one size")
    if test.x.dtype != train.x.dtype:  # 8-bit against deeper pixels: the pool's normalisation would not fit
        raise InputError(
            f"test images are {test.x.dtype} but training images {train.x.dtype}; give both at one bit depth"
        )
    train = datasets.subsample(train, cfg.limit, seed + 1)
    test = datasets.subsample(test, cfg.test_limit, seed + 2)
    validation = datasets.LabeledImages(train.x[:0], train.y[:0])
    if cfg.validation_fraction > 0:
        rest, held = datasets.stratified_split(train.y, cfg.validation_fraction, seed + 3)
        train, validation = train.take(rest), train.take(held)
    num_classes = int(max(train.y.max(), test.y.max())) + 1
    if len(np.unique(train.y)) < 2:
        raise InputError(f"the pool of {name} holds a single class; give at least two")
    unseen = np.setdiff1d(np.unique(test.y), np.unique(train.y))
    if unseen.size:  # a model with an output no training image teaches, judged on images of it
        raise InputError(
            f"the test set holds class {int(unseen[0])}, which no pool image has"
            + (" (after data.limit)" if cfg.limit is not None else "")
            + "; give pool images of every test class, or leave that class out of the test set"
        )
    names = loaded.class_names
    if names is None or len(names) < num_classes:
        names = tuple(str(c) for c in range(num_classes))
    return datasets.Splits(name, train, validation, test, num_classes, names[:num_classes])


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

    @classmethod
    def summary_lines(cls, variants: list[Variant]) -> list[str]:
        """The command-line summary: a header and one row per variant."""
        lines = [f"{'subset model':<14}{'samples':>9}{'test accuracy (mean ± sd)':>30}{'ensemble':>10}{'train s':>9}"]
        for v in variants:
            mean = 100 * np.mean(v.accuracies)
            n = len(v.accuracies)
            spread = f"{mean:.2f}% ± {100 * np.std(v.accuracies, ddof=1):.2f} (n={n})" if n > 1 else f"{mean:.2f}%"
            ensemble = f"{100 * v.ensemble_accuracy:.2f}%" if n > 1 else "-"
            lines.append(f"{v.name:<14}{v.size:>9}{spread:>30}{ensemble:>10}{np.mean(v.train_seconds):>9.1f}")
        return lines


class StatsScoring(StepScoring):
    """A classification step's scoring: (member, shard) units merged into ``stats.npz``, whose
    metadata holds the ledger, and the members' votes in ``votes.npz``.

    A label-based function (``el2n``, ``forgetting``, ...) also keeps a
    :class:`~subsetsearch.dynamics.TrainingDynamics` in ``dynamics.npz`` with its own ledger. The
    state saves it first and the votes next, so they hold at least the units the statistics hold;
    a unit the statistics hold and the dynamics lack (a run killed between the two saves) is scored
    again for the dynamics only. Ordered functions take each shard's members in ensemble order: a
    unit that arrives early (Ray finishes units in any order) waits in memory until the units
    before it are merged.
    """

    unit_label = "(member, shard) pairs"

    def __init__(self, task: ClassificationTask, iteration: int, score_rows: np.ndarray) -> None:
        n, c = task.info.pool_size, task.splits.num_classes
        self.shards = score_shards(len(score_rows))
        self.iteration, self.score_rows = iteration, score_rows
        self.names = [member.name for member in task.member_files(iteration)]
        step = task.step(iteration)
        self.stats = StatsPart.open(step.stats, num_samples=n, num_classes=c)
        self.votes = VotesPart.open(step.votes, rows=score_rows, order=self.names, held=self.stats)
        self.function = task.config.search.function
        self.labels = task.splits.pool.y if self.function in NEEDS_LABELS else None
        self.dynamics, self._early = None, {}
        parts: list[Part] = [self.stats, self.votes]
        if self.function in DYNAMICS_FUNCTIONS:
            window, ordered = task.config.search.window, self.function in NEEDS_ORDER
            self.dynamics = DynamicsPart.open(
                step.dynamics, labels=task.splits.pool.y, num_classes=c, window=window, ordered=ordered
            )
            parts.append(self.dynamics)
        super().__init__(ScoringState(*parts, state_elements=n * c, num_shards=len(self.shards)), self.stats)

    def tasks(self) -> list[ScoreTask]:
        return [
            ScoreTask(self.iteration, name, s, self.score_rows[shard])
            for name in self.names
            for s, shard in enumerate(self.shards)
        ]

    def merge(self, task: ScoreTask, result: ShardScore) -> None:
        lacking = self.state.lacking(task.member, task.shard)
        if self.stats in lacking:
            self.stats.merge(result.stats, index=task.rows)
            self.votes.set(task.member, self.shards[task.shard], result.votes)
            self.state.record(self.stats, task.member, task.shard, seconds=result.seconds)
        if self.dynamics not in lacking:
            return
        self._early[(task.shard, task.member)] = (task, result.dynamics)
        if self.dynamics.dynamics.ordered:  # merge what is next in ensemble order, as far as it goes
            for name in self.names:
                if self.dynamics.ledger.holds(name, task.shard):
                    continue
                if (task.shard, name) not in self._early:
                    break
                self._merge_dynamics(*self._early.pop((task.shard, name)))
        else:
            self._merge_dynamics(*self._early.pop((task.shard, task.member)))

    def _merge_dynamics(self, task: ScoreTask, dynamics: TrainingDynamics) -> None:
        self.dynamics.merge(dynamics, index=task.rows)
        self.state.record(self.dynamics, task.member, task.shard)

    def scores(self) -> np.ndarray:
        if self.dynamics is not None:
            return acquire(self.dynamics.dynamics, self.function)
        return acquire(self.stats.stats, self.function, labels=self.labels)


class ClassificationTask(Task):
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
        self.acq_net, self.subset_net, info = build_networks(cfg, splits.image_shape, splits.num_classes, self.device)
        self._scoring_net, self._scoring_member = None, None
        self._member_order: dict[int, list[str]] = {}  # a step's member names, read once per worker
        self.info = info(splits.name, len(splits.pool), len(splits.test))
        return self.info

    def pool_labels(self) -> np.ndarray:
        return self.splits.pool.y

    def dataset_record(self) -> DatasetRecord:
        return DatasetRecord(
            self.splits.name,
            list(self.splits.class_names),
            pool_labels=self.splits.pool.y,
            test_labels=self.splits.test.y,
            pool_source=self.splits.pool.source,
        )

    def train_model(self, spec: TrainSpec, *, acquisition: bool, progress: ProgressFn | None) -> RunRecord:
        from subsetsearch.train import trainer

        network = self.acq_net if acquisition else self.subset_net
        return trainer.train_run(spec, network, self.pool, validation=self.validation, progress=progress)

    def gallery_record(
        self, scores: np.ndarray, chosen: np.ndarray, scored_at: int, score: Callable[[list[ScoreTask]], list[Any]]
    ) -> GalleryRecord:
        """Per class, the samples either end of the scores and either side of the cut, with the vote
        of the ensemble that scored them (each member's predicted class of the scored rows,
        ``votes.npz``, two bytes a member and row, rather than the pool's statistics, C sums a row)
        and their thumbnails."""
        labels = self.splits.pool.y
        rows, groups = gallery_rows(scores, chosen, labels=labels)
        saved = read_npz(self.step(scored_at).votes, "rows", "votes")
        order = np.argsort(saved["rows"], kind="stable")
        at = order[np.searchsorted(saved["rows"], rows, sorter=order)]
        member_votes = saved["votes"][:, at].astype(np.int64)  # [M, n]
        counts = (
            np.stack([np.bincount(v, minlength=self.splits.num_classes) for v in member_votes.T])
            if len(rows)
            else np.zeros((0, self.splits.num_classes), np.int64)
        )
        members = max(member_votes.shape[0], 1)
        is_chosen = np.isin(rows, chosen)
        return GalleryRecord(
            rows,
            groups,
            scores[rows],
            is_chosen,
            labels[rows].astype(np.int64),
            np.argmax(counts, axis=1).astype(np.int64),
            counts.max(axis=1) / members,
            thumbnails(self.splits.pool.x[rows]),
            self.config.search.function,
        )

    def step_scoring(self, iteration: int, score_rows: np.ndarray) -> StatsScoring:
        return StatsScoring(self, iteration, score_rows)

    def scoring_pieces(self, iteration: int) -> dict[Path, dict]:
        step, search = self.step(iteration), self.config.search
        pieces = {step.stats: {"file": "statistics"}, step.votes: {"file": "votes"}}
        if search.function in DYNAMICS_FUNCTIONS:
            ordered = search.function in NEEDS_ORDER
            pieces[step.dynamics] = {"file": "label statistics", "window": search.window, "ordered": ordered}
        return pieces

    def score_unit(self, task: ScoreTask) -> ShardScore:
        """One member's statistics and votes on one shard of pool rows."""
        from subsetsearch.train import trainer

        started = time.perf_counter()
        path = self.step(task.iteration).member(task.member)
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
        accuracies, seconds, probs_sum = [], [], None
        test_y = self.splits.test.y
        subset = variant.subset
        for k in range(cfg.subset_model.models):
            files = self.layout.model(variant.name, k)
            self.reporter.line(
                f"{variant.name}: training subset model {k + 1}/{cfg.subset_model.models} on {subset.size} samples"
            )
            spec = trainer.TrainSpec(
                files.folder,
                subset.training_rows(),
                seed=self.subset_model_seed(k),
                save_last=True,
                init_from=variant.init_from[k] if variant.init_from else None,
                lr=variant.lr,
            )
            record = self.train_model(
                spec, acquisition=False, progress=self.reporter.bar(f"{variant.name} model {k + 1}")
            )
            probs = self._test_probs(files)
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

    def _test_probs(self, files: TrainingRunFiles) -> np.ndarray:
        from subsetsearch.train import trainer

        path = files.test_probs
        if path.is_file():
            try:
                return np.load(path, allow_pickle=False)
            except Exception as error:
                raise damaged(path, error) from None
        model = self.subset_net.build(0)
        trainer.load_weights(model, files.last)
        probs = trainer.predict(self.subset_net, model, self.test)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, probs)
        return probs
