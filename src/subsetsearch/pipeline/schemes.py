"""The search schemes, one class each, and the one table (:data:`SCHEMES`) that the config, the
driver and the studies read.

A scheme says how a subset is found, step by step, from the services of the driver
(:class:`~subsetsearch.pipeline.search.Search`): finished steps, acquisition scores of a step's
ensemble, outlier rules, seeded permutations. Its class attributes say what the config allows
with it. To add a scheme: a class here, registered in :data:`SCHEMES`, a test, and a line in the
docs (docs/architecture.md, "How to add ...").
"""

from __future__ import annotations

import abc
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from subsetsearch.pipeline.seeds import Seed, derive_seed
from subsetsearch.rundir import Subset

__all__ = ["DETECTION_SCHEMES", "SCHEMES", "Scheme", "SchemeRun", "Scored"]


@dataclass(frozen=True)
class Scored:
    """What a step's selection read: every pool row's score (NaN: not scored), the rows it chose,
    and the step whose ensemble scored them (compress's steps all select by step 0's)."""

    scores: np.ndarray
    chosen: np.ndarray
    scored_at: int


class SchemeRun(Protocol):
    """What a scheme uses of the driver (:class:`~subsetsearch.pipeline.search.Search` implements it).

    ``config`` is the run's :class:`~subsetsearch.pipeline.config.RunConfig` (the config reads this
    module, so it is not imported here), ``counts`` the budgets in samples, ``info`` the task's
    :class:`~subsetsearch.pipeline.task.TaskInfo`, ``task`` the task."""

    config: Any
    counts: list[int]
    info: Any
    task: Any

    def step_fingerprint(self, i: int, previous: Subset | None, **inputs: object) -> str:
        """What step i's subset is computed from: the data, ``previous`` subset and ``inputs``."""

    def acquisition_inputs(self, i: int) -> dict:
        """What step i's acquisition scores and selection depend on, besides the rows."""

    def done_step(self, i: int, fingerprint: str) -> Subset | None:
        """Step i's subset when it is finished (here, or shared by a study), else None."""

    def finish_step(
        self,
        i: int,
        subset: Subset,
        extra: dict,
        fingerprint: str,
        added: int | None = None,
        scored: Scored | None = None,
    ) -> Subset:
        """Write step i's subset and metrics (``extra``), and the gallery of what ``scored`` chose; the subset."""

    def permutation(self, purpose: Seed) -> np.ndarray:
        """The pool's rows in an order seeded by the config seed and ``purpose``."""

    def acquisition_scores(
        self, i: int, train_rows: np.ndarray, score_rows: np.ndarray
    ) -> tuple[float, np.ndarray, dict]:
        """Train step i's ensemble on ``train_rows`` and score ``score_rows``."""

    def disagreement_outliers(self, i: int) -> np.ndarray:
        """Rows step i's ensemble leaves out (``search.skip_disagreement``), a pool mask."""

    def select(self, i: int, scores: np.ndarray, k: int, exclude: np.ndarray) -> np.ndarray:
        """Step i's ``k`` rows of ``scores`` (not in ``exclude``) by the config's selection rule."""

    def outlier_summary(self, outliers: np.ndarray, excluded: np.ndarray) -> dict:
        """metrics.json's counts of the rows the outlier rules left out."""


class Scheme(abc.ABC):
    """How a subset is found: the steps of a search, one per budget (see the module docstring)."""

    #: The name configs use (``search.scheme``).
    name: ClassVar[str]
    #: Trains acquisition ensembles (``random`` and ``full`` do not).
    ensemble: ClassVar[bool] = True
    #: Runs with ``task: detection`` too.
    detection: ClassVar[bool] = True
    #: Has a last acquisition step of its own, whose ensemble ``final_ensemble`` may set.
    last_step: ClassVar[bool] = False
    #: Leaves its subset unscored, so ``search.score_subset`` can score it.
    leaves_subset_unscored: ClassVar[bool] = False
    #: Its first step is a random start (no subset model of its own with ``subset_model.steps: all``).
    random_start: ClassVar[bool] = False
    #: The fewest budgets it takes, and why (the config's message).
    min_budgets: ClassVar[tuple[int, str]] = (1, "")
    #: Its subsets are the budgets' sizes (``full``'s is the whole pool, whatever they say).
    uses_budgets: ClassVar[bool] = True

    @abc.abstractmethod
    def subsets(self, run: SchemeRun) -> list[Subset]:
        """The subset after each step (steps done before are read back, not recomputed)."""

    def selections(self, counts: list[int], pool: int) -> list[tuple[int, int]]:
        """Each of its selections by score, given the budgets in samples: how many rows it takes, and
        from how many candidates."""
        return []

    def init_from(self, run: SchemeRun) -> tuple[tuple[Path, ...] | None, float | None]:
        """The weights subset model k starts from and its rate (None, None: from scratch)."""
        return None, None


class Random(Scheme):
    """Rows in a seeded random order, the first ``budget`` of them at each step."""

    name = "random"
    ensemble = False

    def subsets(self, run: SchemeRun) -> list[Subset]:
        order = run.permutation(Seed.START)
        subsets: list[Subset] = []
        previous, subset = 0, Subset.empty()
        for i, k in enumerate(run.counts):
            fingerprint = run.step_fingerprint(i, subset, kind="random", seed=derive_seed(run.config.seed, Seed.START))
            done = run.done_step(i, fingerprint)
            if done is None:
                done = run.finish_step(i, subset.add_unscored(order[previous:k], i), {"kind": "random"}, fingerprint)
            subset = done
            subsets.append(subset)
            previous = k
        return subsets


class Full(Scheme):
    """The whole pool, in one step."""

    name = "full"
    ensemble = False
    uses_budgets = False

    def subsets(self, run: SchemeRun) -> list[Subset]:
        fingerprint = run.step_fingerprint(0, None, kind="full")
        done = run.done_step(0, fingerprint)
        if done is None:
            every = Subset.empty().add_unscored(np.arange(run.info.pool_size), 0)
            done = run.finish_step(0, every, {"kind": "full"}, fingerprint)
        return [done]


class BuildUp(Scheme):
    """Random start, then each step an ensemble trained on the subset scores the unselected rows and
    the best join the subset."""

    name = "build_up"
    last_step = True
    leaves_subset_unscored = True
    random_start = True
    min_budgets = (2, "a random start and at least one acquisition step, e.g. [0.125, 0.25]")
    #: Score every row, chosen ones included, so the subset becomes a multiset.
    duplicate: ClassVar[bool] = False

    def subsets(self, run: SchemeRun) -> list[Subset]:
        order = run.permutation(Seed.START)
        start = run.step_fingerprint(0, None, kind="random start", seed=derive_seed(run.config.seed, Seed.START))
        subset = run.done_step(0, start) or run.finish_step(
            0, Subset.empty().add_unscored(order[: run.counts[0]], 0), {"kind": "random start"}, start
        )
        subsets = [subset]
        for i in range(1, len(run.counts)):
            fingerprint = run.step_fingerprint(i, subset, kind=self.name, acquisition=run.acquisition_inputs(i))
            subset = run.done_step(i, fingerprint) or self._acquire(run, i, subset, fingerprint)
            subsets.append(subset)
        return subsets

    def selections(self, counts: list[int], pool: int) -> list[tuple[int, int]]:
        return [(b - a, pool if self.duplicate else pool - a) for a, b in itertools.pairwise(counts)]

    def _acquire(self, run: SchemeRun, i: int, subset: Subset, fingerprint: str) -> Subset:
        n = run.info.pool_size
        selected = np.zeros(n, bool)
        if not self.duplicate:
            selected[subset.index] = True
        score_all = self.duplicate or run.config.search.score_subset
        candidates = np.arange(n) if score_all else np.flatnonzero(~selected)
        train_s, scores, ensemble = run.acquisition_scores(i, subset.training_rows(), candidates)
        outliers = run.disagreement_outliers(i)
        chosen = run.select(i, scores, run.counts[i] - subset.size, selected | outliers)  # outliers only: duplicating
        extra = {
            "kind": "acquisition",
            "trained_on": subset.size,
            "scored": len(candidates),
            "train_seconds": train_s,
            "chosen_again": int(np.isin(chosen, subset.index).sum()),
            **run.outlier_summary(outliers, selected),
            **ensemble,
        }
        scored = Scored(scores, chosen, i)
        return run.finish_step(i, subset.add(chosen, scores[chosen], i), extra, fingerprint, len(chosen), scored)


class AutoDuplication(BuildUp):
    """Build up that scores the whole pool each step, chosen samples included: the subset becomes a
    multiset (the paper's automatic duplication)."""

    name = "auto_duplication"
    leaves_subset_unscored = False
    duplicate = True


class Compress(Scheme):
    """An ensemble trained on the whole pool selects once; subset models train from scratch."""

    name = "compress"
    detection = False

    def selections(self, counts: list[int], pool: int) -> list[tuple[int, int]]:
        return [(k, pool) for k in counts]

    def subsets(self, run: SchemeRun) -> list[Subset]:
        n = run.info.pool_size
        subsets: list[Subset] = []
        scores, outliers = None, np.zeros(n, bool)
        extra: dict = {}
        acquisition = run.acquisition_inputs(0)
        for i, k in enumerate(run.counts):
            fingerprint = run.step_fingerprint(i, None, kind="full-pool ensemble", acquisition=acquisition)
            done = run.done_step(i, fingerprint)
            if done is not None:
                subsets.append(done)
                continue
            if scores is None:
                train_s, scores, ensemble = run.acquisition_scores(0, np.arange(n), np.arange(n))
                outliers = run.disagreement_outliers(0)
                extra = {"train_seconds": train_s, **ensemble}
            chosen = run.select(0, scores, k, outliers)
            step_extra = {
                "kind": "acquisition",
                "trained_on": n,
                "scored": n,
                **run.outlier_summary(outliers, np.zeros(n, bool)),
            }
            if i == 0:
                step_extra.update(extra)  # the ensemble's cost is counted once
            else:
                step_extra["score_seconds"] = 0.0
            subset = Subset.empty().add(chosen, scores[chosen], i)
            subsets.append(run.finish_step(i, subset, step_extra, fingerprint, scored=Scored(scores, chosen, 0)))
        return subsets


class Pretrain(Compress):
    """As compress, but subset models are fine-tuned from the ensemble's own training runs."""

    name = "pretrain"

    def init_from(self, run: SchemeRun) -> tuple[tuple[Path, ...] | None, float | None]:
        """Subset model k starts from the last checkpoint of acquisition run k mod R, at
        ``search.finetune_lr`` (default: a tenth of the subset model's rate)."""
        members = run.task.member_files(0)
        runs = sorted({m.run for m in members})
        last = {r: [m.path for m in members if m.run == r][-1] for r in runs}
        init = tuple(last[runs[k % len(runs)]] for k in range(run.config.subset_model.models))
        return init, run.config.search.finetune_lr or run.config.subset_train_config().lr / 10


#: Every scheme by name, in the order the config's schema lists them.
SCHEMES: dict[str, type[Scheme]] = {
    scheme.name: scheme for scheme in (BuildUp, AutoDuplication, Pretrain, Compress, Random, Full)
}
#: The schemes ``task: detection`` runs.
DETECTION_SCHEMES = tuple(name for name, scheme in SCHEMES.items() if scheme.detection)
