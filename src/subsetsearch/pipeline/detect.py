"""``subsetsearch run`` with ``task: detection``: subset search for a single-stage detector.

The same run directory and schemes as classification (build_up, auto_duplication, random, full),
with three differences: the pool is the built-in detection set (Fashion-MNIST objects on canvases,
:mod:`subsetsearch.train.canvas`); the acquisition ensemble's per-class centre maps are scored
with :mod:`subsetsearch.detection` one chunk of images at a time; subset models are judged by
COCO mAP and the size-weighted wMAP (:mod:`subsetsearch.train.detection_metrics`). Added to the
run directory::

    iter_NN/scores.npz       image scores of step NN (resumable: chunks done so far)
    iter_NN/heatmaps.npz     per-class uncertainty heatmaps of a few images (figures)
    models/VARIANT/model_K/test_metrics.json
    report/heatmaps_iter_NN.png, report/duplication.png, report/duplication.md
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from subsetsearch.detection import acquire_maps, stream_image_scores
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.pipeline.run import (
    _SEED_DATA,
    _SEED_SELECT,
    _SEED_SUBSET_MODEL,
    STATE_SAVE_INTERVAL_S,
    RunResult,
    Search,
    Subset,
    budget_counts,
    derive_seed,
)

if TYPE_CHECKING:
    from subsetsearch.pipeline.config import RunConfig
    from subsetsearch.train.canvas import DetectionImages

#: Images scored per chunk: the chunk's maps and statistics are all that is held.
SCORE_CHUNK = 1024
#: Images whose heatmaps are kept for the figure: the highest-scoring and some at random.
FIGURE_TOP, FIGURE_RANDOM = 3, 3


def detection_sets(config: RunConfig) -> tuple[DetectionImages, DetectionImages]:
    """The training (pool) and test canvases a detection config asks for."""
    from subsetsearch.train import canvas

    det = config.detection_config()
    return canvas.load_fashion_detection(
        det.images,
        det.test_images,
        derive_seed(config.seed, _SEED_DATA),
        None if config.data.path is None else str(config.data.path),
        size=det.size,
        max_objects=det.max_objects,
        scale=det.scale,
        clutter=det.clutter,
        noise=det.noise,
    )


@dataclass
class DetectionVariant:
    """Test results of the detectors trained on one subset."""

    name: str
    size: int
    unique: int
    metrics: list[dict]
    train_seconds: list[float]

    def mean(self, key: str) -> float:
        return float(np.mean([m[key] for m in self.metrics]))

    def to_json(self) -> dict:
        keys = ("wMAP", "mAP", "AP50", "AP_small", "AP_medium", "AP_large")
        return {
            "subset_size": self.size,
            "unique_samples": self.unique,
            **{f"{k}_mean": self.mean(k) for k in keys},
            "wMAP_std": float(np.std([m["wMAP"] for m in self.metrics])),
            "test_metrics": self.metrics,
            "train_seconds": self.train_seconds,
        }


def summary_rows(variants: list[DetectionVariant]) -> list[str]:
    rows = [f"{'subset model':<26}{'images':>8}{'unique':>8}{'wMAP':>8}{'mAP':>8}{'AP50':>8}{'train s':>9}"]
    for v in variants:
        rows.append(
            f"{v.name:<26}{v.size:>8}{v.unique:>8}{100 * v.mean('wMAP'):>8.2f}{100 * v.mean('mAP'):>8.2f}"
            f"{100 * v.mean('AP50'):>8.2f}{np.mean(v.train_seconds):>9.1f}"
        )
    return rows


@dataclass
class DetectionTensors:
    """Canvases and their CenterNet targets as tensors on the training device."""

    x: object  # torch.Tensor [N, 1, S, S] uint8
    mean: object
    std: object
    heat: object
    cell: object
    size: object
    offset: object
    mask: object

    def __len__(self) -> int:
        return len(self.x)


class DetectionSearch(Search):
    """A search over the detection set (see the module docstring)."""

    def _prepare(self, threads: int | None = None) -> None:
        from subsetsearch.internal.malloc import tune_malloc

        tune_malloc()
        import torch

        from subsetsearch.train import canvas, detector, trainer

        cfg = self.config
        det = cfg.detection_config()
        trainer.set_threads(cfg.train.threads or threads)
        self.device = trainer.resolve_device(cfg.train.device)
        self.images, self.test_images = detection_sets(cfg)
        self.data_name = "fashion_mnist_detection"
        self.num_classes = len(canvas.CLASS_NAMES)
        mean, std = trainer.channel_stats(self.images.x)
        targets = detector.encode_targets(
            self.images.boxes, self.images.labels, self.images.image_index, len(self.images), self.num_classes, det.size
        )

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

        shape = (1, -1, 1, 1)
        self.pool = DetectionTensors(
            tensor(self.images.x),
            torch.as_tensor(mean, device=self.device).reshape(shape),
            torch.as_tensor(std, device=self.device).reshape(shape),
            tensor(targets.heat),
            tensor(targets.cell),
            tensor(targets.size),
            tensor(targets.offset),
            tensor(targets.mask),
        )
        self.test = DetectionTensors(tensor(self.test_images.x), self.pool.mean, self.pool.std, *[None] * 5)
        self.validation = None
        self.acq_net = trainer.Network(cfg.model, cfg.train, 1, self.num_classes, self.device)
        self.subset_net = trainer.Network(
            cfg.subset_model_config(), cfg.subset_train_config(), 1, self.num_classes, self.device
        )
        self.counts = budget_counts(cfg.search.budgets, len(self.pool))

    # -- training -------------------------------------------------------------------------------

    def class_weights(self, train_rows: np.ndarray) -> np.ndarray:
        """Inverse box frequency per class in the images a model trains on, each image counted by
        its multiplicity (the subset is the model's training set).

        Measured on benchmarks/detection_subsets.py (seed 0, 40% subsets): weights from the whole
        pool instead lowered wMAP of the acquired subsets (automatic duplication 50.7 against 54.3)
        by giving rare classes, already enriched by acquisition, a second boost.
        """
        from subsetsearch.train import detector

        per_image = np.bincount(np.asarray(train_rows), minlength=len(self.images))
        boxes = np.repeat(self.images.labels, per_image[self.images.image_index])
        return detector.class_weights(boxes, self.num_classes)

    def _batch_loss(self, network: object, train_rows: np.ndarray) -> object:
        import torch

        from subsetsearch.train import detector

        weights = torch.as_tensor(self.class_weights(train_rows), device=self.device)
        data = self.pool

        def loss(net: torch.nn.Module, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            output = net(network.inputs(data, data.x[index]))
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

    # -- scoring --------------------------------------------------------------------------------

    def _member_weights(self, i: int) -> list[tuple[str, dict]]:
        from safetensors.torch import load_file

        return [(name, load_file(str(path), device=str(self.device))) for name, path, _ in self._member_files(i)]

    def _maps(self, network: object, net: object, rows: np.ndarray) -> np.ndarray:
        """Sigmoid centre maps [n, K, h, w] (float32) of ``net`` on pool ``rows``."""
        import torch

        with torch.inference_mode():
            net.eval()
            index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
            output = network.forward(net, self.pool, self.pool.x[index])
            return torch.sigmoid(output[:, : self.num_classes]).cpu().numpy()

    def _member_maps(self, weights: list[tuple[str, dict]], rows: np.ndarray) -> Iterator[np.ndarray]:
        net = self._scoring_net
        for _, state in weights:
            net.load_state_dict(state)
            yield self._maps(self.acq_net, net, rows)

    def _centre_maps(self, rows: np.ndarray) -> np.ndarray | None:
        if self.config.search.function != "error_count":
            return None
        from subsetsearch.train import detector

        part = self.images.take(rows)
        size = self.config.detection_config().size
        return detector.centre_maps(part.boxes, part.labels, part.image_index, len(rows), self.num_classes, size)

    def _acquisition_scores(
        self, i: int, train_rows: np.ndarray, score_rows: np.ndarray
    ) -> tuple[float, np.ndarray, dict]:
        train_seconds = self._train_ensemble(i, train_rows)
        weights = self._member_weights(i)
        names = [name for name, _ in weights]
        self._scoring_net = self.acq_net.build(0)
        n = len(self.pool)
        path = self._iter_dir(i) / "scores.npz"
        scores, done, seconds = np.full(n, np.nan), 0, 0.0
        if path.is_file():
            with np.load(path) as saved:
                scores, done, seconds = saved["scores"], int(saved["chunks_done"]), float(saved["seconds"])
        chunks = [score_rows[s : s + SCORE_CHUNK] for s in range(0, len(score_rows), SCORE_CHUNK)]
        if done < len(chunks):
            self.reporter.line(f"step {i}: scoring {len(score_rows)} images with {len(names)} members")
        bar = self.reporter.bar(f"step {i} scoring")
        started = last_save = time.perf_counter()
        todo = ((rows, self._member_maps(weights, rows), self._centre_maps(rows)) for rows in chunks[done:])
        for j, (rows, image_scores, _) in enumerate(
            stream_image_scores(todo, self.config.search.function, n), start=done + 1
        ):
            scores[rows] = image_scores
            if bar is not None:
                bar("scoring", j, len(chunks))
            if time.perf_counter() - last_save > STATE_SAVE_INTERVAL_S or j == len(chunks):
                self._save_scores(path, scores, j, seconds + time.perf_counter() - started)
                last_save = time.perf_counter()
        seconds += time.perf_counter() - started
        if not path.is_file():
            self._save_scores(path, scores, len(chunks), seconds)
        self._keep_heatmaps(i, weights, score_rows, scores)
        return (
            train_seconds,
            scores,
            {"ensemble": self.config.ensemble.kind, "members": len(names), "score_seconds": seconds},
        )

    @staticmethod
    def _save_scores(path: Path, scores: np.ndarray, chunks_done: int, seconds: float) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, scores=scores, chunks_done=chunks_done, seconds=seconds)

    def _keep_heatmaps(self, i: int, weights: list, score_rows: np.ndarray, scores: np.ndarray) -> None:
        """Heatmaps of the step's top-scoring images and a few random ones, for the figure."""
        path = self._iter_dir(i) / "heatmaps.npz"
        if path.is_file():
            return
        ranked = score_rows[np.argsort(-scores[score_rows], kind="stable")]
        rng = np.random.default_rng(derive_seed(self.config.seed, _SEED_SELECT, i, 1))
        rest = ranked[FIGURE_TOP:]
        picks = np.concatenate([ranked[:FIGURE_TOP], rng.choice(rest, min(FIGURE_RANDOM, len(rest)), replace=False)])
        members = list(self._member_maps(weights, picks))
        image_scores, heatmaps = acquire_maps(members, self.config.search.function, self._centre_maps(picks))
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                index=picks,
                image_scores=image_scores,
                heatmaps=heatmaps.astype(np.float32),
                mean_maps=np.mean(members, axis=0).astype(np.float32),
            )

    # -- subset models --------------------------------------------------------------------------

    def _evaluate(self, name: str, subset: Subset, pretrained: bool = False) -> DetectionVariant:
        from subsetsearch.train import trainer

        cfg = self.config
        net = self.subset_net
        metrics, seconds = [], []
        rows = subset.training_rows()
        for k in range(cfg.subset_model.models):
            model_dir = self.run_dir / "models" / name / f"model_{k}"
            self.reporter.line(
                f"{name}: training detector {k + 1}/{cfg.subset_model.models} on {subset.size} images "
                f"({len(subset.index)} unique)"
            )
            record = trainer.train_run(
                model_dir,
                net,
                self.pool,
                rows,
                seed=derive_seed(cfg.seed, _SEED_SUBSET_MODEL, k),
                save_last=True,
                progress=self.reporter.bar(f"{name} model {k + 1}"),
                batch_loss=self._batch_loss(net, rows),
            )
            metrics.append(self._test_metrics(model_dir))
            seconds.append(record.seconds)
        variant = DetectionVariant(name, subset.size, len(subset.index), metrics, seconds)
        self.reporter.line(f"{name}: test wMAP {100 * variant.mean('wMAP'):.2f}, mAP {100 * variant.mean('mAP'):.2f}")
        return variant

    def _test_metrics(self, model_dir: Path) -> dict:
        path = model_dir / "test_metrics.json"
        if path.is_file():
            return json.loads(path.read_text())
        import torch

        from subsetsearch.train import detector, trainer
        from subsetsearch.train.detection_metrics import evaluate_detections

        net = self.subset_net.build(0)
        trainer.load_weights(net, model_dir / "last.safetensors")
        net.eval()
        detections: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(self.test), trainer.INFERENCE_BATCH):
                output = self.subset_net.forward(net, self.test, self.test.x[start : start + trainer.INFERENCE_BATCH])
                detections += detector.decode(output, self.num_classes)
        truth = self.test_images
        result = evaluate_detections(detections, truth.boxes, truth.labels, truth.image_index, self.num_classes)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(result, indent=1) + "\n")
        return result

    # -- figures --------------------------------------------------------------------------------

    def run(self) -> RunResult:
        result = super().run()
        from subsetsearch.report.detection import write_detection_figures

        write_detection_figures(self.run_dir, self.images)
        return result
