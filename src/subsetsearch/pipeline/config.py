"""The ``subsetsearch run`` config: YAML validated by pydantic, every error one line naming the key."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from subsetsearch.acquisition import (
    ACQUISITION_FUNCTIONS,
    DISAGREEMENT_FUNCTIONS,
    FUNCTIONS,
    NEEDS_LABELS,
    NEEDS_ORDER,
)
from subsetsearch.dynamics import DEFAULT_WINDOW
from subsetsearch.errors import InputError
from subsetsearch.internal.budgets import check_config_budget
from subsetsearch.pipeline.schemes import DETECTION_SCHEMES, SCHEMES, Scheme
from subsetsearch.selection import BALANCES, DIRECTIONS, Coverage, SelectionRule
from subsetsearch.train.data import DATASETS, DEFAULT_CACHE_MB
from subsetsearch.train.settings import (
    DETECTOR_NAMES,
    ModelConfig,
    PatienceSchedule,
    StrictModel,
    TrainConfig,
    default_flip,
)

if TYPE_CHECKING:
    from subsetsearch.executors import Executor


#: The keys of ``data`` a COCO-format set (``dataset: coco``) reads besides its path and image folders.
COCO_KEYS = frozenset({"test_path", "test_fraction", "cache_mb", "workers"})


class DataConfig(StrictModel):
    """Where the labeled set L and the test set come from."""

    dataset: Literal[(*DATASETS, "coco")] = "fashion_mnist"  # type: ignore[valid-type]
    path: Path | None = None
    """Dataset fashion_mnist: folder of IDX files; arrays: .npz/.npy; image_folder: folder; coco (task
    detection): the pool's COCO instances JSON."""
    image_dir: Path | None = None
    """Dataset coco: the folder of the pool's images (their file_name is relative to it)."""
    test_image_dir: Path | None = None
    """Dataset coco: the folder of test_path's images (default: image_dir)."""
    labels: Path | None = None
    """Arrays given as .npy: the labels."""
    test_path: Path | None = None
    """Arrays / image_folder / coco (an instances JSON): a separate test set."""
    test_labels: Path | None = None
    test_fraction: float = Field(0.2, gt=0, lt=1)
    """Held out as test set when there is no test split."""
    validation_fraction: float = Field(0.0, ge=0, lt=0.5)
    """Held out of the pool for best-epoch / patience."""
    limit: int | None = Field(None, gt=0)
    """A seeded sample of the pool (small runs)."""
    test_limit: int | None = Field(None, gt=0)
    image_size: tuple[int, int] | None = None
    """Dataset image_folder: resize to (height, width)."""
    on_disk: bool | None = None
    """Dataset arrays: keep .npy images on disk, read a batch at a time (true) or load them (false); default:
    on disk when the file is larger than a quarter of the available memory. Zarr images stay on disk."""
    cache_mb: int = Field(DEFAULT_CACHE_MB, ge=0)
    """Datasets image_folder and coco (images read from their files a batch at a time): MiB of decoded
    images kept for the next epoch (0: decode every time)."""
    workers: int | None = Field(None, ge=0)
    """Datasets image_folder and coco: processes that decode images ahead of training (0: none, the
    trainer decodes them); None: half the cores, at most 4."""

    @model_validator(mode="after")
    def _paths(self) -> DataConfig:
        source = DATASETS.get(self.dataset)
        if self.path is None and (self.dataset == "coco" or source.path == "required"):
            raise ValueError(f"data.path is required for dataset '{self.dataset}'")
        if self.dataset == "coco" and self.image_dir is None:
            raise ValueError("data.image_dir is required for dataset 'coco': the folder of its images")
        if self.dataset != "coco" and (self.image_dir is not None or self.test_image_dir is not None):
            raise ValueError("data.image_dir / data.test_image_dir are for dataset 'coco'; remove them")
        if source is not None and source.path == "refused" and self.path is not None:
            raise ValueError(f"data.path is not used by the built-in {self.dataset}; remove it")
        self._keys_that_apply(source.keys if source is not None else COCO_KEYS)
        return self

    def _keys_that_apply(self, keys: frozenset[str]) -> None:
        """Refuse a key set away from its default that this dataset would not read (an ignored
        option is an error, never silent)."""
        always = {"dataset", "path", "limit", "test_limit", "validation_fraction", "image_dir", "test_image_dir"}
        for name, field in type(self).model_fields.items():
            if name in always or name in keys or getattr(self, name) == field.default:
                continue
            raise ValueError(f"data.{name}: dataset {self.dataset} does not read it; remove it")
        npz = {key: getattr(self, key) for key in ("path", "test_path")}
        npz = {key: p for key, p in npz.items() if p is not None and Path(p).suffix.lower() == ".npz"}
        if self.test_path is not None and self.test_fraction != type(self).model_fields["test_fraction"].default:
            raise ValueError("data.test_fraction: data.test_path gives the test set; remove test_fraction")
        if self.test_labels is not None and self.test_path is None:
            raise ValueError(
                "data.test_labels: there is no data.test_path whose images they label; give it, or remove them"
            )
        for images, labels in (("path", "labels"), ("test_path", "test_labels")):
            if images in npz and getattr(self, labels) is not None:
                raise ValueError(f"data.{labels}: the .npz of data.{images} holds its labels (y) already; remove it")
        if self.on_disk and "path" in npz:
            raise ValueError(
                "data.on_disk: the images of an .npz are read whole; save them as .npy (or Zarr) to keep them on disk"
            )


class SequenceConfig(StrictModel):
    """Sequence mode of the built-in detection set, like frames of driving video: clips of
    consecutive frames in which the same items move smoothly over a slowly changing background."""

    clip_length: int = Field(8, ge=2)
    """Frames per clip (the last clip may be shorter)."""
    speed: float = Field(1.5, ge=0)
    """Largest speed of an item along each axis, pixels per frame."""
    background_change: float = Field(0.05, ge=0, le=1)
    """Share of the background noise drawn anew from one frame to the next."""


class DetectionConfig(StrictModel):
    """The built-in detection set (task: detection): Fashion-MNIST objects on canvases, long-tailed
    classes (see subsetsearch.train.canvas). ``data.path`` may point at the IDX files. With
    ``data.dataset: coco`` only ``size`` (the side images are letterboxed to) and ``class_weights`` apply."""

    images: int = Field(20000, ge=10)
    """Training canvases (the pool) from Fashion-MNIST's training items."""
    test_images: int = Field(2000, ge=10)
    """Test canvases from its test items."""
    size: int = Field(64, ge=32, multiple_of=8)
    """Canvas side in pixels (dataset coco: the detector's square input, images letterboxed to it)."""
    max_objects: int = Field(4, ge=1)
    scale: tuple[int, int] = (10, 36)
    """Smallest and largest side of a pasted item."""
    clutter: float = Field(0.5, ge=0)
    """Mean number of unlabeled items per canvas."""
    noise: float = Field(8.0, ge=0)
    """Background noise (0..255 scale)."""
    sequence: SequenceConfig | None = None
    """Clips of near-copy frames instead of independent canvases (training and test images)."""
    class_weights: Literal["subset", "pool"] = "subset"
    """The loss's per-class weights, inverse box frequency: in each model's own training set (the
    subset, with its repeats; the paper's rule) or in the whole pool (the same for every model)."""


class EnsembleConfig(StrictModel):
    """The acquisition ensemble: ``seeds`` (best epoch of each of ``runs`` runs), ``checkpoints``
    (epochs start..stop step of one run), ``combined`` (those checkpoints of every run)."""

    kind: Literal["seeds", "checkpoints", "combined"] = "checkpoints"
    runs: int = Field(1, gt=0)
    start: int | None = Field(None, gt=0)
    """First checkpoint epoch (1-based); default: the second half's first."""
    stop: int | None = Field(None, gt=0)
    """Last checkpoint epoch, inclusive; default: the last epoch."""
    step: int = Field(1, gt=0)

    @model_validator(mode="after")
    def _range(self) -> EnsembleConfig:
        if self.kind == "checkpoints" and self.runs != 1:
            raise ValueError("ensemble.runs: a 'checkpoints' ensemble uses one run; use kind 'combined' for several")
        if self.start is not None and self.stop is not None and self.start > self.stop:
            raise ValueError(f"ensemble.start ({self.start}) is after ensemble.stop ({self.stop})")
        return self


class CoverageConfig(StrictModel):
    """Coverage-centric selection (Zheng et al., ICLR 2023): set aside the ``prune_hardest`` share of
    highest scores, split the rest of the score range into ``strata`` equal-width strata, and spread
    the budget evenly over them, at random within each."""

    strata: int = Field(ge=1)
    """K, the number of equal-width score strata."""
    prune_hardest: float = Field(0.0, ge=0, lt=1)
    """beta, the share of highest scores set aside first (likely mislabeled)."""


class SearchConfig(StrictModel):
    scheme: Literal[tuple(SCHEMES)] = "build_up"  # type: ignore[valid-type]
    """How the subset is found. auto_duplication: build_up that scores the whole pool each step, chosen
    samples included, so the subset becomes a multiset."""
    function: str = Field("mutual_information", json_schema_extra={"enum": list(FUNCTIONS)})
    """The acquisition function: the paper's four, or a score users compare with (least_confidence, margin,
    el2n, forgetting, dyn_unc, variability, hard_to_learn; the last five use the pool's labels)."""
    budgets: list[int | float | str] = Field([0.125, 0.25, 0.5])  # pydantic copies the default
    """Subset sizes, step by step: counts (integers: 5000) or fractions of the pool (a decimal point or
    %: 0.25, 1.0, "25%"). build_up: the first is the random start."""
    window: int = Field(DEFAULT_WINDOW, ge=2)
    """dyn_unc: the window J of consecutive checkpoints, at most the ensemble's members."""
    skip_top: float = Field(0.0, ge=0, lt=1)
    """Outliers: the top fraction of scores set aside."""
    balance: Literal[tuple(BALANCES)] = "none"  # type: ignore[valid-type]
    """none: one budget for the whole pool (the paper's rule); class: each selection split into quotas in
    the pool's class proportions, each filled by that class's best (classification)."""
    coverage: CoverageConfig | None = None
    """Coverage-centric selection instead of the top of the scores (with balance class, within each class)."""
    direction: Literal[tuple(DIRECTIONS)] = "highest"  # type: ignore[valid-type]
    """highest: the highest scores first (the paper's rule); lowest: the lowest first (the easiest samples)."""
    skip_disagreement: bool = False
    """Outliers, the paper's ImageNet rule: leave out the rows on which every member of the step's
    ensemble predicts a different class (classification; possible only with at most as many members as
    classes)."""
    score_subset: bool = False
    """build_up: each step's ensemble also scores the rows it trained on (they are never acquired again),
    so the step's statistics and votes cover the whole pool; the ensembles study reads its accuracy on its
    own training rows there (the paper's Table II)."""
    finetune_lr: float | None = Field(None, gt=0)
    """Scheme pretrain: the subset model's rate (default train.lr / 10)."""

    @field_validator("function")
    @classmethod
    def _function(cls, name: str) -> str:
        if name not in FUNCTIONS:
            raise ValueError(f"unknown acquisition function '{name}'; choose one of {', '.join(FUNCTIONS)}")
        return name

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, budgets: list[int | float | str]) -> list[int | float | str]:
        if not budgets:
            raise ValueError("give at least one budget")
        parsed = [check_config_budget(b) for b in budgets]
        for a, b in itertools.pairwise(parsed):  # counts against fractions: checked on the pool
            if a.is_fraction == b.is_fraction and b.value <= a.value:
                raise ValueError(f"the budget schedule must grow, but {b.text} follows {a.text}")
        return budgets

    @model_validator(mode="after")
    def _scheme(self) -> SearchConfig:
        fewest, why = SCHEMES[self.scheme].min_budgets
        if len(self.budgets) < fewest:
            raise ValueError(f"search.budgets: {self.scheme} needs {why}")
        if self.coverage is not None and self.direction == "lowest":
            raise ValueError(
                "search.direction: lowest changes nothing with search.coverage, which samples every stratum at "
                "random; remove one"
            )
        return self

    def rule(self) -> SelectionRule:
        """How each step's scores become its selection (:class:`~subsetsearch.selection.SelectionRule`)."""
        coverage = None if self.coverage is None else Coverage(self.coverage.strata, self.coverage.prune_hardest)
        return SelectionRule(skip_top=self.skip_top, balance=self.balance, coverage=coverage, direction=self.direction)


class SubsetModelConfig(StrictModel):
    """The model(s) trained on the final subset; several make an ensemble of subset models."""

    models: int = Field(1, gt=0)
    steps: Literal["final", "all"] = "final"
    """final: subset models for the final subset; all: a subset model (and baselines) for every step's subset."""
    model: ModelConfig | None = None
    """Default: the acquisition model."""
    train: TrainConfig | None = None
    """Default: the acquisition training."""


class ExecutorConfig(StrictModel):
    """Where acquisition members are trained and scored. Not part of what a run computes: a run
    started on one executor may resume on another (bit-identical when ``train.threads`` is set)."""

    name: Literal["local", "ray"] = "local"
    address: str | None = None
    """Executor ray: an existing cluster ("auto", "ray://head:10001"); none starts a local Ray."""
    workers: int | None = Field(None, gt=0)
    """Executor ray: actors (default: the cluster's CPUs / cpus_per_worker, or GPUs)."""
    cpus_per_worker: float = Field(1.0, gt=0)
    """Executor ray: CPUs per actor, fractions allowed."""
    gpus_per_worker: float | None = Field(None, ge=0)
    """Executor ray: GPUs per actor; default 1 where the cluster has GPUs, else 0."""

    def make(self) -> Executor:
        """The executor this section describes (subsetsearch.executors)."""
        from subsetsearch.executors import make_executor

        return make_executor(
            self.name,
            address=self.address,
            workers=self.workers,
            cpus_per_worker=self.cpus_per_worker,
            gpus_per_worker=self.gpus_per_worker,
        )


#: Config keys that say where a run computes, not what: a run directory resumes whatever they are.
PLACEMENT_KEYS = ("run_dir", "executor")


class RunConfig(StrictModel):
    """A ``subsetsearch run`` config: the data, the models and their training, the search, the subset
    models and where the work runs."""

    name: str = "run"
    """Names the run (and its default directory)."""
    task: Literal["classification", "detection"] = "classification"
    seed: int = 0
    """Seeds every random choice of the run: splits, random starts, networks, tie-breaks."""
    run_dir: Path | None = None
    """Default: runs/<name>."""
    data: DataConfig = DataConfig()
    detection: DetectionConfig | None = None
    """The built-in detection set of task detection (default settings when absent)."""
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    ensemble: EnsembleConfig = EnsembleConfig()
    final_ensemble: EnsembleConfig | None = None
    """The ensemble of the last acquisition step (build_up, auto_duplication); default: ``ensemble``.
    The paper's ensemble ablation changes only the ensemble that acquires the last +40%."""
    search: SearchConfig = SearchConfig()
    subset_model: SubsetModelConfig = SubsetModelConfig()
    compare: list[Literal["random", "full"]] = Field([])  # pydantic copies the default
    """Baselines trained beside the subset model."""
    executor: ExecutorConfig = ExecutorConfig()

    @model_validator(mode="before")
    @classmethod
    def _flip_by_dataset(cls, data: object) -> object:
        """``train.augment.flip`` (and the subset models' own ``train``'s) left out or None: on for the
        built-in Fashion-MNIST, off for every other dataset (:func:`default_flip`)."""
        if not isinstance(data, dict):
            return data
        source = data.get("data")
        dataset = source.get("dataset", "fashion_mnist") if isinstance(source, dict) else "fashion_mnist"
        flip = default_flip(dataset, data.get("task", "classification"))

        def resolved(train: object) -> object:
            if train is None:
                return {"augment": {"flip": flip}}
            if isinstance(train, dict):
                augment = train.get("augment")
                if augment is None:
                    return {**train, "augment": {"flip": flip}}
                if isinstance(augment, dict) and augment.get("flip") is None:
                    return {**train, "augment": {**augment, "flip": flip}}
            return train

        data = {**data, "train": resolved(data.get("train"))}
        subset_model = data.get("subset_model")
        if isinstance(subset_model, dict) and subset_model.get("train") is not None:
            data["subset_model"] = {**subset_model, "train": resolved(subset_model["train"])}
        return data

    @model_validator(mode="before")
    @classmethod
    def _detector_by_default(cls, data: object) -> object:
        """``task: detection`` without a model names the detector."""
        if isinstance(data, dict) and data.get("task") == "detection":
            model = data.get("model")
            if model is None:
                return {**data, "model": {"name": DETECTOR_NAMES[0]}}
            if isinstance(model, dict) and "name" not in model and "factory" not in model:
                return {**data, "model": {**model, "name": DETECTOR_NAMES[0]}}
        return data

    @model_validator(mode="after")
    def _cross(self) -> RunConfig:
        epochs = self.train.epochs
        for name, ensemble in self._ensembles():
            for key in ("start", "stop"):
                value = getattr(ensemble, key)
                if value is not None and value > epochs:
                    raise ValueError(f"{name}.{key}: epoch {value} is past train.epochs ({epochs})")
        needs_validation = isinstance(self.train.schedule, PatienceSchedule) or (
            self.subset_model.train is not None and isinstance(self.subset_model.train.schedule, PatienceSchedule)
        )
        if needs_validation and self.data.validation_fraction == 0:
            raise ValueError(
                "train.schedule: the patience schedule needs a validation set; set data.validation_fraction (e.g. 0.1)"
            )
        if len(set(self.compare)) != len(self.compare):
            raise ValueError("compare lists a baseline twice")
        self._check_search_options()
        for name, ensemble in self._ensembles():
            members = self.ensemble_members(ensemble)
            if self._scheme.ensemble and self.search.function in DISAGREEMENT_FUNCTIONS and members < 2:
                raise ValueError(
                    f"search.function: {self.search.function} measures disagreement between members, and "
                    f"{'this ensemble' if name == 'ensemble' else name} has 1, so every sample would score 0 "
                    "(a random subset); use entropy, or more members"
                )
            if self.search.skip_disagreement and members < 2:
                raise ValueError(
                    f"search.skip_disagreement: {name} has 1 member, and every member disagreeing needs 2 or more"
                )
            self._check_order(name, ensemble, members)
        self._check_task()
        return self

    def _ensembles(self) -> list[tuple[str, EnsembleConfig]]:
        """The acquisition ensembles in use, by their key."""
        out = [("ensemble", self.ensemble)]
        if self.final_ensemble is not None:
            out.append(("final_ensemble", self.final_ensemble))
        return out

    @property
    def _scheme(self) -> type[Scheme]:
        return SCHEMES[self.search.scheme]

    def _check_search_options(self) -> None:
        scheme = self.search.scheme
        if self.final_ensemble is not None and not self._scheme.last_step:
            have = " and ".join(name for name, s in SCHEMES.items() if s.last_step)
            raise ValueError(
                f"final_ensemble: scheme {scheme} has no last acquisition step of its own (only {have} do); remove it"
            )
        if self.search.score_subset and not self._scheme.leaves_subset_unscored:
            have = " and ".join(name for name, s in SCHEMES.items() if s.leaves_subset_unscored)
            raise ValueError(
                f"search.score_subset: only {have} leaves its subset unscored (scheme {scheme} scores "
                "every row already, or none); remove it"
            )
        for key, default in (("balance", "none"), ("coverage", None), ("direction", "highest")):
            if getattr(self.search, key) != default and not self._scheme.ensemble:
                raise ValueError(f"search.{key}: scheme {scheme} selects by no score; remove it")
        if self.search.balance == "class" and self.task != "classification":
            raise ValueError(
                f"search.balance: class needs one class per sample, and a {self.task} image holds boxes of many; "
                "remove it"
            )
        if self.search.skip_disagreement and (not self._scheme.ensemble or self.task != "classification"):
            raise ValueError(
                "search.skip_disagreement: needs a classification run whose scheme has an ensemble "
                f"(task {self.task}, scheme {scheme}); remove it"
            )

    def _check_order(self, name: str, ensemble: EnsembleConfig, members: int) -> None:
        """Functions that follow the members' order need one run's checkpoints, in epoch order."""
        function = self.search.function
        if not self._scheme.ensemble:
            return
        if function in NEEDS_ORDER and ensemble.kind != "checkpoints":
            raise ValueError(
                f"search.function: {function} follows one training run's checkpoints in epoch order; "
                f"use {name}.kind: checkpoints"
            )
        if function == "dyn_unc" and not self.search.window <= members:
            raise ValueError(
                f"search.window: dyn_unc's window {self.search.window} is larger than "
                f"{'the ensemble' if name == 'ensemble' else name}'s {members} "
                f"checkpoints; lower search.window or add checkpoints ({name}.start, {name}.step)"
            )

    def ensemble_at(self, iteration: int, steps: int) -> EnsembleConfig:
        """The acquisition ensemble of step ``iteration`` of ``steps``: ``final_ensemble`` for the last."""
        if self.final_ensemble is not None and iteration == steps - 1:
            return self.final_ensemble
        return self.ensemble

    def ensemble_members(self, ensemble: EnsembleConfig | None = None) -> int:
        """Members of an acquisition ensemble (default ``ensemble``; fewer when a patience schedule
        stops a run early)."""
        ensemble = ensemble or self.ensemble
        if ensemble.kind == "seeds":
            return ensemble.runs
        return ensemble.runs * len(self.checkpoint_epochs(ensemble))

    def _check_task(self) -> None:
        models = {"model.name": self.model.name, "subset_model.model.name": self.subset_model_config().name}
        factories = {
            "model.factory": self.model.factory,
            "subset_model.model.factory": self.subset_model_config().factory,
        }
        if self.task == "detection":
            for key, factory in factories.items():
                if factory is not None:
                    raise ValueError(
                        f"{key}: task: detection trains the built-in detector ({', '.join(DETECTOR_NAMES)}); "
                        "your own network works for classification"
                    )
        if self.task == "classification":
            if self.detection is not None:
                raise ValueError("detection: only used with task: detection; remove it or set task: detection")
            if self.data.dataset == "coco":
                raise ValueError("data.dataset: coco is a detection set; set task: detection")
            for key, name in models.items():
                if name in DETECTOR_NAMES:
                    raise ValueError(f"{key}: '{name}' is a detector; set task: detection or pick a classifier")
            return
        if self.data.dataset not in ("fashion_mnist", "coco"):
            raise ValueError(
                "data.dataset: task: detection takes the built-in canvases (fashion_mnist) or a COCO-format set (coco)"
            )
        det = self.detection_config()
        if self.data.dataset == "fashion_mnist" and not 4 <= det.scale[0] <= det.scale[1] <= det.size:
            raise ValueError(f"detection.scale: must be increasing, from at least 4 to at most size ({det.size})")
        if self.data.dataset == "coco" and self.detection is not None:
            drawn = self.detection.model_fields_set - {"size", "class_weights"}
            if drawn:
                raise ValueError(
                    f"detection.{sorted(drawn)[0]}: sets the built-in canvases; with dataset coco only detection.size "
                    "(the detector's input side) and detection.class_weights apply"
                )
        if self.search.function not in ACQUISITION_FUNCTIONS:
            why = (
                "needs each image's class labels, which detection has not"
                if self.search.function in NEEDS_LABELS
                else "scores a distribution over classes, and a centre map's location is a yes or no for each class"
            )
            raise ValueError(
                f"search.function: detection scores centre maps with the paper's functions "
                f"({', '.join(ACQUISITION_FUNCTIONS)}); '{self.search.function}' {why}"
            )
        if self.search.scheme not in DETECTION_SCHEMES:
            raise ValueError(
                f"search.scheme: '{self.search.scheme}' is not available for detection; "
                f"choose one of {', '.join(DETECTION_SCHEMES)}"
            )
        for key, name in models.items():
            if name not in DETECTOR_NAMES:
                raise ValueError(f"{key}: task: detection needs a detector ({', '.join(DETECTOR_NAMES)}), got '{name}'")
        if self.data.validation_fraction > 0:
            raise ValueError("data.validation_fraction: task: detection trains without a validation set; set it to 0")
        if isinstance(self.train.schedule, PatienceSchedule):
            raise ValueError("train.schedule: task: detection has no validation set for patience; use milestones")
        if self.data.limit is not None or self.data.test_limit is not None:
            raise ValueError("data.limit: task: detection sizes its set with detection.images / detection.test_images")

    def detection_config(self) -> DetectionConfig:
        return self.detection or DetectionConfig()

    def checkpoint_epochs(self, ensemble: EnsembleConfig | None = None) -> list[int]:
        """Epochs (1-based) whose checkpoints are members of an ensemble (default ``ensemble``; one
        run for 'checkpoints')."""
        ensemble = ensemble or self.ensemble
        last = self.train.epochs
        stop = ensemble.stop if ensemble.stop is not None else last
        start = ensemble.start if ensemble.start is not None else min(stop, last // 2 + 1)
        return list(range(start, stop + 1, ensemble.step))

    def subset_model_config(self) -> ModelConfig:
        return self.subset_model.model or self.model

    def subset_train_config(self) -> TrainConfig:
        return self.subset_model.train or self.train

    def resolved_run_dir(self) -> Path:
        return self.run_dir if self.run_dir is not None else Path("runs") / self.name


def _key(loc: tuple) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        if i > 0 and loc[i - 1] == "schedule" and item in ("milestones", "patience"):
            continue  # the union's tag, not a key the user wrote
        parts.append(f"[{item}]" if isinstance(item, int) else ("." if parts else "") + str(item))
    return "".join(parts)


def format_validation_error(error: ValidationError) -> str:
    """The first error of a pydantic validation as one line naming the key."""
    first = error.errors()[0]
    key = _key(first["loc"])
    kind, message = first["type"], first["msg"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key; remove it or check its spelling"
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return f"{key}.kind: must be 'milestones' or 'patience'"
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) or kind.startswith("value_error") else f" (got {got!r})"
    if not key or message.startswith(key):  # a model-level check names its keys itself
        return f"{message}{shown}"
    return f"{key}: {message}{shown}"


def parse_config(data: object, source: str = "config", *, config_dir: Path | None = None) -> RunConfig:
    """Validate a parsed YAML mapping; InputError with one line naming the key otherwise.

    ``config_dir``: the folder of the config file, which a ``model.factory`` script's relative path
    starts from (without it, the working directory)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{source}: the top level must be a mapping of keys (data:, model:, train:, ...)")
    try:
        return RunConfig.model_validate(data, context={"config_dir": config_dir})
    except ValidationError as error:
        raise InputError(f"{source}: {format_validation_error(error)}") from None


def read_yaml(path: str | os.PathLike, what: str = "config") -> object:
    """The parsed contents of a YAML file; InputError (one line) if missing or not YAML."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} '{path}' not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise InputError(f"{path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file; give a YAML {what}") from None


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate a YAML run config."""
    return parse_config(read_yaml(path), str(path), config_dir=Path(path).parent)


def executor_changes(name: str | None, address: str | None) -> dict:
    """The ``executor:`` keys that ``--executor`` and ``--ray-address`` set; InputError if they clash."""
    if name is not None and name not in ("local", "ray"):
        raise InputError(f"--executor {name!r}: choose local or ray")
    if address is not None and name == "local":
        raise InputError("--ray-address needs --executor ray (or executor.name: ray in the config)")
    changes: dict = {}
    if name is not None:
        changes["name"] = name
    if address is not None:
        changes["name"], changes["address"] = "ray", address
    return changes


def with_executor(config: RunConfig, name: str | None, address: str | None) -> RunConfig:
    """``config`` with the executor the command line asks for."""
    changes = executor_changes(name, address)
    if not changes:
        return config
    return config.model_copy(update={"executor": config.executor.model_copy(update=changes)})


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a run config, generated from the pydantic models.

    Editors validate config YAML with it (``subsetsearch schema``; ``docs/schemas/``). It states
    each key's type, range and default; the checks across keys (``ensemble.stop`` within
    ``train.epochs``, say) happen when the config is loaded.
    """
    schema = RunConfig.model_json_schema(mode="validation")
    return {"$schema": JSON_SCHEMA_DIALECT, **schema, "title": "subsetsearch run config"}


def dump_config(config: RunConfig) -> dict:
    """The resolved config as plain YAML-able data (every default filled in)."""
    return config.model_dump(mode="json")
