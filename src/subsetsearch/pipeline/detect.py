"""The detection task of ``subsetsearch run`` (``task: detection``): a single-stage detector.

The same skeleton and schemes as classification (build_up, auto_duplication, random, full), with
three differences: the pool is the built-in detection set (Fashion-MNIST objects on canvases,
:mod:`subsetsearch.train.canvas`, as independent images or as clips of near-copy frames) or a
COCO-format set of the user's (:mod:`subsetsearch.train.coco_data`: images letterboxed to the
detector's input, judged in their original pixels); a unit of scoring work is a chunk of images scored by every
member at once (an image's score is the maximum over the per-location scores of the ensemble's
centre maps, :mod:`subsetsearch.detection`), run on the executor like classification's units and
kept in ``iter_NN/scores.npz`` with its ledger; subset models are judged by COCO mAP and the
size-weighted wMAP (:mod:`subsetsearch.train.detection_metrics`). Each step also keeps a few
images, their boxes and heatmaps (``iter_NN/heatmaps.npz``) for the report's figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from subsetsearch.detection import MapStats
from subsetsearch.errors import InputError
from subsetsearch.executors import ScoreTask
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.ledger import ALL_MEMBERS
from subsetsearch.pipeline.config import RunConfig
from subsetsearch.pipeline.seeds import Seed, derive_seed
from subsetsearch.pipeline.task import RunResult, StepScoring, Task, TaskInfo, VariantSpec, build_networks
from subsetsearch.report.gallery import gallery_rows, thumbnails
from subsetsearch.rundir import DatasetRecord, GalleryRecord, HeatmapRecord, TrainingRunFiles, damaged, read_json
from subsetsearch.state import ImageScoresPart, ScoringState

if TYPE_CHECKING:
    from subsetsearch.train.canvas import DetectionImages
    from subsetsearch.train.trainer import ProgressFn, RunRecord, TrainSpec

#: Images scored per unit of work: the chunk's maps and statistics are all that is held.
SCORE_CHUNK = 1024
#: Images whose heatmaps are kept for the figure: the highest-scoring and some at random.
FIGURE_TOP, FIGURE_RANDOM = 3, 3
#: Detection metrics reported per variant (means over its detectors).
METRIC_KEYS = ("wMAP", "mAP", "AP50", "AP_small", "AP_medium", "AP_large")


@dataclass(frozen=True)
class DetectionSets:
    """A detection run's pool and test images, their class names and dataset name; for a COCO set
    also each test image's letterbox scale (input pixels per original pixel), else None."""

    pool: DetectionImages
    test: DetectionImages
    class_names: list[str]
    name: str
    test_scale: np.ndarray | None = None
    #: Each pool image's identity in the user's data (a COCO set's image_id and file_name; a canvas's row).
    pool_source: dict[str, np.ndarray] = field(default_factory=dict)


def detection_sets(config: RunConfig) -> DetectionSets:
    """The training (pool) and test images a detection config asks for: the built-in canvases, or a
    COCO-format set (its own test file, else a seeded ``data.test_fraction`` of its images)."""
    from subsetsearch.train import canvas

    det = config.detection_config()
    data = config.data
    if data.dataset == "coco":
        from subsetsearch.train.coco_data import load_coco

        assert data.path is not None and data.image_dir is not None
        from subsetsearch.train.disk_images import ImageCache

        cache = ImageCache(data.cache_mb << 20)  # one cache for the pool's and the test set's images
        pool = load_coco(data.path, data.image_dir, size=det.size, cache=cache, workers=data.workers)
        pool_rows = np.arange(len(pool.scale))
        if data.test_path is not None:
            test = load_coco(
                data.test_path,
                data.test_image_dir or data.image_dir,
                size=det.size,
                option="data.test_path",
                cache=cache,
                workers=data.workers,
            )
            if test.images.x.dtype != pool.images.x.dtype:
                raise InputError(
                    f"data.test_path {data.test_path}'s images are {test.images.x.dtype} but data.path's are "
                    f"{pool.images.x.dtype}; give both at one bit depth"
                )
            if test.source.class_names != pool.source.class_names:
                raise InputError(
                    f"data.test_path {data.test_path} has categories {test.source.class_names}, but data.path has "
                    f"{pool.source.class_names}; give both files the same categories"
                )
        else:
            order = np.random.default_rng(derive_seed(config.seed, Seed.DATA)).permutation(len(pool.scale))
            held = max(1, round(data.test_fraction * len(order)))
            if held >= len(order):
                raise InputError(f"data.path {data.path} has {len(order)} images; a test split needs at least 2")
            pool_rows = np.sort(order[held:])
            pool, test = pool.take(pool_rows), pool.take(np.sort(order[:held]))
        source = {
            "image_id": pool.source.image_ids[pool_rows],
            "file_name": np.array(pool.source.file_names, dtype=str)[pool_rows],
        }
        return DetectionSets(
            pool.images, test.images, pool.source.class_names, f"coco:{Path(data.path).name}", test.scale, source
        )
    pool_canvases, test_canvases = canvas.load_fashion_detection(
        det.images,
        det.test_images,
        derive_seed(config.seed, Seed.DATA),
        None if config.data.path is None else str(config.data.path),
        size=det.size,
        max_objects=det.max_objects,
        scale=det.scale,
        clutter=det.clutter,
        noise=det.noise,
        sequence=None if det.sequence is None else det.sequence.model_dump(),
    )
    name = "fashion_mnist_detection" if det.sequence is None else "fashion_mnist_detection_sequences"
    source = {"source_row": np.arange(len(pool_canvases), dtype=np.int64)}
    return DetectionSets(pool_canvases, test_canvases, list(canvas.CLASS_NAMES), name, pool_source=source)


@dataclass
class ChunkScore:
    """A chunk of images scored by every member: image scores [n], seconds, and with
    ``keep_maps`` the per-class heatmaps and the members' mean maps [n, K, h, w]."""

    scores: np.ndarray
    seconds: float
    heatmaps: np.ndarray | None = None
    mean_maps: np.ndarray | None = None


@dataclass
class DetectionVariant:
    """Test results of the detectors trained on one subset."""

    name: str
    size: int
    unique: int
    metrics: list[dict]
    train_seconds: list[float]
    precision: str

    def mean(self, key: str) -> float:
        return float(np.mean([m[key] for m in self.metrics]))

    def to_json(self) -> dict:
        wmap = [m["wMAP"] for m in self.metrics]
        return {
            "subset_size": self.size,
            "unique_samples": self.unique,
            **{f"{k}_mean": self.mean(k) for k in METRIC_KEYS},
            "wMAP_sd": float(np.std(wmap, ddof=1)) if len(wmap) > 1 else None,  # sample sd over the detectors
            "models": len(self.metrics),
            "test_metrics": self.metrics,
            "train_seconds": self.train_seconds,
            "precision": self.precision,
        }

    @classmethod
    def summary_lines(cls, variants: list[DetectionVariant]) -> list[str]:
        """The command-line summary: a header and one row per variant."""
        rows = [f"{'subset model':<26}{'images':>8}{'unique':>8}{'wMAP':>8}{'mAP':>8}{'AP50':>8}{'train s':>9}"]
        for v in variants:
            rows.append(
                f"{v.name:<26}{v.size:>8}{v.unique:>8}{100 * v.mean('wMAP'):>8.2f}{100 * v.mean('mAP'):>8.2f}"
                f"{100 * v.mean('AP50'):>8.2f}{np.mean(v.train_seconds):>9.1f}"
            )
        return rows


@dataclass
class DetectionTensors:
    """Canvases and their CenterNet targets as tensors on the training device; images left on disk
    (``host``, a COCO set's files) are read a batch at a time, ``x`` then None."""

    x: object  # torch.Tensor [N, c, S, S] uint8 or float32, or None
    mean: object
    std: object
    heat: object
    cell: object
    size: object
    offset: object
    mask: object
    host: object = None  # DiskImages

    def __len__(self) -> int:
        return len(self.x) if self.x is not None else len(self.host)

    def images(self, index: object) -> object:
        """The images of rows ``index`` (a tensor of rows or a slice), on the device."""
        from subsetsearch.train.trainer import ImageRows

        return ImageRows.images(self, index)

    def batches(self, blocks: list) -> Iterator[object]:
        """The images of each block of rows in turn (:meth:`~subsetsearch.train.trainer.ImageRows.batches`)."""
        from subsetsearch.train.trainer import ImageRows

        return ImageRows.batches(self, blocks)


class MapScoring(StepScoring):
    """A detection step's scoring: chunks of images, each scored by every member, their image
    scores and the ledger in ``scores.npz`` (a :class:`~subsetsearch.state.ImageScoresPart`)."""

    unit_label = "chunks of images"

    def __init__(self, task: DetectionTask, iteration: int, score_rows: np.ndarray) -> None:
        n = task.info.pool_size
        self.chunks = [score_rows[s : s + SCORE_CHUNK] for s in range(0, len(score_rows), SCORE_CHUNK)]
        self.iteration = iteration
        self.part = ImageScoresPart.open(task.step(iteration).scores, names=("scores",), num_images=n)
        super().__init__(ScoringState(self.part, state_elements=n, num_shards=len(self.chunks)), self.part)

    def tasks(self) -> list[ScoreTask]:
        return [ScoreTask(self.iteration, ALL_MEMBERS, s, rows) for s, rows in enumerate(self.chunks)]

    def merge(self, task: ScoreTask, result: ChunkScore) -> None:
        self.part.set(task.rows, {"scores": result.scores})
        self.state.record(self.part, task.member, task.shard, seconds=result.seconds)

    def scores(self) -> np.ndarray:
        return self.part.columns["scores"].copy()


class DetectionTask(Task):
    """A search over the detection set (see the module docstring)."""

    sample_word = "images"

    def prepare(self, threads: int | None = None) -> TaskInfo:
        from subsetsearch.internal.malloc import tune_malloc

        tune_malloc()
        import torch

        from subsetsearch.train import detector, trainer

        cfg = self.config
        det = cfg.detection_config()
        trainer.set_threads(cfg.train.threads or threads)
        self.device = trainer.resolve_device(cfg.train.device)
        self.sets = detection_sets(cfg)
        self.images, self.test_images = self.sets.pool, self.sets.test
        self.num_classes = len(self.sets.class_names)
        mean, std = trainer.channel_stats(self.images.x)
        targets = detector.encode_targets(
            self.images.boxes, self.images.labels, self.images.image_index, len(self.images), self.num_classes, det.size
        )

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

        from subsetsearch.train.disk_images import DiskImages

        def pixels(images: object) -> tuple[object, object]:  # (x, host): in memory, or left in their files
            return (None, images) if isinstance(images, DiskImages) else (tensor(images), None)

        pool_x, pool_host = pixels(self.images.x)
        test_x, test_host = pixels(self.test_images.x)
        shape = (1, -1, 1, 1)
        self.pool = DetectionTensors(
            pool_x,
            torch.as_tensor(mean, device=self.device).reshape(shape),
            torch.as_tensor(std, device=self.device).reshape(shape),
            tensor(targets.heat),
            tensor(targets.cell),
            tensor(targets.size),
            tensor(targets.offset),
            tensor(targets.mask),
            pool_host,
        )
        self.test = DetectionTensors(test_x, self.pool.mean, self.pool.std, *[None] * 5, test_host)
        image_shape = tuple(self.images.x.shape[1:])
        self.acq_net, self.subset_net, info = build_networks(cfg, image_shape, self.num_classes, self.device)
        self._weights: tuple[int, list[dict]] | None = None
        self._scoring_net = None
        self.info = info(self.sets.name, len(self.images), len(self.test_images))
        return self.info

    def dataset_record(self) -> DatasetRecord:
        boxes = np.zeros((len(self.images), self.num_classes), dtype=np.int64)
        np.add.at(boxes, (self.images.image_index, self.images.labels), 1)
        return DatasetRecord(self.sets.name, self.sets.class_names, pool_boxes=boxes, pool_source=self.sets.pool_source)

    # -- training -------------------------------------------------------------------------------

    def class_weights(self, train_rows: np.ndarray) -> np.ndarray:
        """Inverse box frequency per class in the images a model trains on, each image counted by
        its multiplicity (the subset is the model's training set), as the paper weights its loss;
        with ``detection.class_weights: pool``, in the whole pool instead."""
        from subsetsearch.train import detector

        if self.config.detection_config().class_weights == "pool":
            return detector.class_weights(self.images.labels, self.num_classes)
        per_image = np.bincount(np.asarray(train_rows), minlength=len(self.images))
        boxes = np.repeat(self.images.labels, per_image[self.images.image_index])
        return detector.class_weights(boxes, self.num_classes)

    def _batch_loss(self, network: object, train_rows: np.ndarray) -> object:
        import torch

        from subsetsearch.train import detector

        weights = torch.as_tensor(self.class_weights(train_rows), device=self.device)
        data = self.pool

        def loss(
            net: torch.nn.Module, images: torch.Tensor, index: torch.Tensor, generator: torch.Generator
        ) -> torch.Tensor:
            output = net(network.inputs(data, images))
            return detector.detection_loss(
                output,
                data.heat[index],
                data.cell[index],
                data.size[index],
                data.offset[index],
                data.mask[index],
                weights,
            )

        return loss

    def train_model(self, spec: TrainSpec, *, acquisition: bool, progress: ProgressFn | None) -> RunRecord:
        from subsetsearch.train import trainer

        network = self.acq_net if acquisition else self.subset_net
        loss = self._batch_loss(network, spec.rows)
        return trainer.train_run(spec, network, self.pool, batch_loss=loss, progress=progress)

    # -- scoring --------------------------------------------------------------------------------

    def step_scoring(self, iteration: int, score_rows: np.ndarray) -> MapScoring:
        return MapScoring(self, iteration, score_rows)

    def scoring_pieces(self, iteration: int) -> dict[Path, dict]:
        return {self.step(iteration).scores: {"file": "image scores", "function": self.config.search.function}}

    def _member_weights(self, iteration: int) -> list[dict]:
        """Step ``iteration``'s members' weights on the device (a worker keeps one step's)."""
        from safetensors.torch import load_file

        def weights(path: Path) -> dict:
            try:
                return load_file(str(path), device=str(self.device))
            except FileNotFoundError:
                raise
            except Exception as error:  # safetensors' errors: a truncated or overwritten file
                raise damaged(path, error) from None

        if self._weights is None or self._weights[0] != iteration:
            paths = [member.path for member in self.member_files(iteration)]
            self._weights = (iteration, [weights(path) for path in paths])
        return self._weights[1]

    def centre_maps(self, rows: np.ndarray) -> np.ndarray | None:
        """Ground-truth centre maps [n, K, h, w] of pool ``rows`` (``error_count`` only, else None)."""
        if self.config.search.function != "error_count":
            return None
        from subsetsearch.train import detector

        part = self.images.take(rows)
        size = self.config.detection_config().size
        return detector.centre_maps(part.boxes, part.labels, part.image_index, len(rows), self.num_classes, size)

    def member_maps(self, net: object, rows: np.ndarray) -> np.ndarray:
        """Sigmoid centre maps [n, K, h, w] (float32) of ``net`` on pool ``rows``, in the network's
        precision, in batches of the trainer's inference batch."""
        import torch

        from subsetsearch.train.trainer import INFERENCE_BATCH

        net.eval()
        out = []
        rows = np.asarray(rows, dtype=np.int64)
        blocks = [
            torch.from_numpy(rows[start : start + INFERENCE_BATCH]).to(self.device)
            for start in range(0, len(rows), INFERENCE_BATCH)
        ]
        with torch.inference_mode():
            for images in self.pool.batches(blocks):
                output = self.acq_net.forward(net, self.pool, images)
                out.append(torch.sigmoid(output[:, : self.num_classes]).cpu().numpy())
        return np.concatenate(out)

    def score_unit(self, task: ScoreTask) -> ChunkScore:
        """Every member's centre maps of a chunk of images, streamed into :class:`MapStats`."""
        started = time.perf_counter()
        self._scoring_net = self._scoring_net or self.acq_net.build(0)
        net, stats, total = self._scoring_net, None, None
        for state in self._member_weights(task.iteration):
            net.load_state_dict(state)
            maps = self.member_maps(net, task.rows)
            stats = stats or MapStats(*maps.shape)
            stats.update(maps)
            if task.keep_maps:
                total = maps.astype(np.float64) if total is None else total + maps
        image_scores, heatmaps = stats.scores(self.config.search.function, gt=self.centre_maps(task.rows))
        if not task.keep_maps:
            return ChunkScore(image_scores, time.perf_counter() - started)
        mean_maps = (total / stats.num_members).astype(np.float32)
        return ChunkScore(image_scores, time.perf_counter() - started, heatmaps.astype(np.float32), mean_maps)

    def after_scoring(
        self,
        iteration: int,
        score_rows: np.ndarray,
        scores: np.ndarray,
        score: Callable[[list[ScoreTask]], list[Any]],
    ) -> None:
        """Keep the heatmaps of the step's top-scoring images and a few random ones, with the
        images and their boxes, for the figure (``heatmaps.npz``)."""
        path = self.step(iteration).heatmaps
        if path.is_file():
            return
        ranked = score_rows[np.argsort(-scores[score_rows], kind="stable")]
        rng = np.random.default_rng(derive_seed(self.config.seed, Seed.SELECT, iteration, 1))
        rest = ranked[FIGURE_TOP:]
        picks = np.concatenate([ranked[:FIGURE_TOP], rng.choice(rest, min(FIGURE_RANDOM, len(rest)), replace=False)])
        task = ScoreTask(iteration, ALL_MEMBERS, 0, picks, keep_maps=True)
        (result,) = score([task])
        shown = self.images.take(picks)
        HeatmapRecord(
            picks,
            result.scores,
            result.heatmaps,
            result.mean_maps,
            shown.x if isinstance(shown.x, np.ndarray) else shown.x[np.arange(len(shown.x))],
            shown.boxes,
            shown.labels,
            shown.image_index,
        ).save(path)

    def gallery_record(
        self, scores: np.ndarray, chosen: np.ndarray, scored_at: int, score: Callable[[list[ScoreTask]], list[Any]]
    ) -> GalleryRecord:
        """The images either end of the scores and either side of the cut, each with the ensemble's
        heatmap (the per-location score, its largest over the classes) laid over it in red."""
        rows, groups = gallery_rows(scores, chosen)
        (result,) = score([ScoreTask(scored_at, ALL_MEMBERS, 0, rows, keep_maps=True)])
        grey = thumbnails(self.images.x[rows], side=max(self.images.x.shape[-2:]))[:, :1].astype(np.float64)
        heat = result.heatmaps.max(axis=1)  # [n, h, w]
        heat = heat / np.maximum(heat.max(axis=(1, 2), keepdims=True), 1e-12)
        factor = (grey.shape[2] // heat.shape[1], grey.shape[3] // heat.shape[2])
        heat = np.kron(heat, np.ones(factor))[:, None, : grey.shape[2], : grey.shape[3]]
        rgb = np.concatenate([np.maximum(grey, 255 * heat), grey * (1 - 0.6 * heat), grey * (1 - 0.6 * heat)], axis=1)
        n = len(rows)
        return GalleryRecord(
            rows,
            groups,
            scores[rows],
            np.isin(rows, chosen),
            np.full(n, -1, np.int64),
            np.full(n, -1, np.int64),
            np.full(n, np.nan),
            thumbnails(rgb.round().astype(np.uint8)),
            self.config.search.function,
        )

    # -- subset models --------------------------------------------------------------------------

    def evaluate(self, variant: VariantSpec) -> DetectionVariant:
        from subsetsearch.train import trainer

        cfg = self.config
        metrics, seconds = [], []
        subset = variant.subset
        rows = subset.training_rows()
        for k in range(cfg.subset_model.models):
            files = self.layout.model(variant.name, k)
            self.reporter.line(
                f"{variant.name}: training detector {k + 1}/{cfg.subset_model.models} on {subset.size} images "
                f"({len(subset.index)} unique)"
            )
            spec = trainer.TrainSpec(files.folder, rows, seed=self.subset_model_seed(k), save_last=True)
            record = self.train_model(
                spec, acquisition=False, progress=self.reporter.bar(f"{variant.name} model {k + 1}")
            )
            metrics.append(self._test_metrics(files))
            seconds.append(record.seconds)
        result = DetectionVariant(
            variant.name, subset.size, len(subset.index), metrics, seconds, self.subset_net.precision
        )
        self.reporter.line(
            f"{variant.name}: test wMAP {100 * result.mean('wMAP'):.2f}, mAP {100 * result.mean('mAP'):.2f}"
        )
        return result

    def _test_metrics(self, files: TrainingRunFiles) -> dict:
        path = files.test_metrics
        if path.is_file():
            return read_json(path)
        import torch

        from subsetsearch.train import detector, trainer
        from subsetsearch.train.detection_metrics import evaluate_detections

        net = self.subset_net.build(0)
        trainer.load_weights(net, files.last)
        net.eval()
        detections: list[np.ndarray] = []
        step = trainer.INFERENCE_BATCH
        blocks = [slice(start, start + step) for start in range(0, len(self.test), step)]
        with torch.inference_mode():
            for images in self.test.batches(blocks):
                output = self.subset_net.forward(net, self.test, images)
                detections += detector.decode(output, self.num_classes)
        truth = self.test_images
        boxes, buckets = truth.boxes, None
        if self.sets.test_scale is not None:  # a COCO set: judged in original pixels, COCO's size buckets
            from subsetsearch.train.detection_metrics import COCO_BUCKETS

            scale = self.sets.test_scale
            detections = [
                d if not len(d) else np.column_stack([d[:, :4] / scale[i], d[:, 4:]]) for i, d in enumerate(detections)
            ]
            boxes, buckets = truth.boxes / scale[truth.image_index, None], COCO_BUCKETS
        result = evaluate_detections(
            detections, boxes, truth.labels, truth.image_index, self.num_classes, buckets=buckets
        )
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(result, indent=1) + "\n")
        return result

    def finish_run(self, result: RunResult) -> None:
        from subsetsearch.report.detection import write_detection_figures

        write_detection_figures(self.layout.root)
