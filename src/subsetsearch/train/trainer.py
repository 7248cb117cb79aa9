"""Training and inference with PyTorch: seeded, resumable after a kill at any moment.

A training run lives in one folder, whose files :class:`~subsetsearch.rundir.TrainingRunFiles`
names: ``state.safetensors`` (weights + momentum after the last finished epoch, with the schedule
and history in its metadata: one file, atomic), the checkpoints an ensemble asked for, the best
validation epoch (seeds ensembles), the final weights (subset models), and ``done.json``, written
last.

Every epoch draws its order and augmentation from generators seeded by (seed, epoch), so a
run resumed from ``state.safetensors`` continues bit for bit as if never stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from subsetsearch.errors import InputError
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.rundir import TrainingRunFiles, damaged, read_json
from subsetsearch.train.disk_images import DiskImages
from subsetsearch.train.factory import call_factory, check_factory
from subsetsearch.train.models import build_model
from subsetsearch.train.settings import ModelConfig, PatienceSchedule, TrainConfig

#: progress(what, done, total): called after each batch of training or inference.
ProgressFn = Callable[[str, int, int], None]
#: batch_loss(net, images, rows, generator): the training loss of one batch: its images (raw, on the
#: device) and their rows of the data.
BatchLossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
INFERENCE_BATCH = 1024


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"train.device is '{name}' but CUDA is not available here; use 'auto' or 'cpu'")
    return device


def use_bf16(config: TrainConfig, device: torch.device) -> bool:
    """Whether to train and predict under bf16 autocast.

    ``auto`` is bf16 on CUDA devices that support it and fp32 on every CPU. Measured on the demo
    search (``benchmarks/results/precision.json``, a CPU with AVX512-BF16, three seeds): bf16 scored
    in 0.44x the time but did not train reliably faster, with subsets neither better nor worse that
    three seeds could tell, and a CPU's flags do not promise even that (emulated, bf16 is slower:
    ``benchmarks/results/train_throughput.json``), and fp32 on every CPU keeps a config's results
    from depending on which instructions the CPU has.
    """
    if config.precision != "auto":
        return config.precision == "bf16"
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


class ImageRows:
    """Rows of images for a model: ``x``, a tensor on the device, or ``host``, images left on disk
    (:class:`~subsetsearch.train.disk_images.DiskImages`, ``x`` then None) read a batch at a time.
    Mixed into :class:`TensorData` and the detector's tensors."""

    x: torch.Tensor | None
    host: DiskImages | None
    mean: torch.Tensor

    def images(self, index: torch.Tensor | slice) -> torch.Tensor:
        """The images of rows ``index`` (a tensor of rows or a slice), on the device."""
        return next(self.batches([index]))

    def batches(self, blocks: Sequence[torch.Tensor | slice]) -> Iterator[torch.Tensor]:
        """The images of each block of rows (a tensor of rows or a slice) in turn, on the device.
        Images on disk are read ahead of use (``DiskImages.stream``: worker processes for files)."""
        if self.host is None:
            for index in blocks:
                yield self.x[index]
            return
        n = len(self.host)
        rows = [np.arange(*b.indices(n)) if isinstance(b, slice) else b.cpu().numpy() for b in blocks]
        for block in self.host.stream(rows):
            yield torch.from_numpy(block).to(self.mean.device)


@dataclass
class TensorData(ImageRows):
    """Images and labels as tensors on the training device, with the pool's per-channel mean/std.

    Images left on disk (``host``, :class:`~subsetsearch.train.disk_images.DiskImages`) are read a
    batch at a time (:meth:`batches`); ``x`` is then None.
    """

    x: torch.Tensor | None  # [N, c, H, W] uint8 or float32
    y: torch.Tensor  # [N] int64
    mean: torch.Tensor  # [1, c, 1, 1] float32
    std: torch.Tensor
    host: DiskImages | None = None

    @classmethod
    def build(
        cls, x: np.ndarray | DiskImages, y: np.ndarray, mean: np.ndarray, std: np.ndarray, device: torch.device
    ) -> TensorData:
        shape = (1, -1, 1, 1)
        on_disk = isinstance(x, DiskImages)
        return cls(
            None if on_disk else torch.from_numpy(np.ascontiguousarray(x)).to(device),
            torch.from_numpy(np.ascontiguousarray(y)).to(device),
            torch.as_tensor(mean, dtype=torch.float32, device=device).reshape(shape),
            torch.as_tensor(std, dtype=torch.float32, device=device).reshape(shape),
            x if on_disk else None,
        )

    def __len__(self) -> int:
        return len(self.y)


#: Rows of images summed at a time by :func:`channel_stats`.
STATS_BLOCK = 1024


def channel_stats(x: np.ndarray | DiskImages) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of images [N, c, H, W] (std floored at 1e-6), in float64 sums of
    blocks of rows (no full-size float copy; images on disk are read ahead, block by block)."""
    n = len(x)
    blocks = [np.arange(start, min(n, start + STATS_BLOCK)) for start in range(0, n, STATS_BLOCK)]
    chunks = x.stream(blocks) if isinstance(x, DiskImages) else (x[b[0] : b[-1] + 1] for b in blocks)
    mean = np.zeros(x.shape[1])
    square = np.zeros(x.shape[1])
    for block in chunks:
        chunk = block.astype(np.float64)
        mean += chunk.sum(axis=(0, 2, 3))
        square += (chunk**2).sum(axis=(0, 2, 3))
    count = max(1, n * x.shape[2] * x.shape[3])
    mean /= count
    std = np.sqrt(np.maximum(square / count - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


@dataclass(frozen=True)
class Network:
    """How to build and run one model: architecture, training settings, data shape.

    ``input_size`` (height, width) is what a ``model.factory`` is told; the built-in models take any size.
    """

    model: ModelConfig
    train: TrainConfig
    in_channels: int
    num_classes: int
    device: torch.device
    input_size: tuple[int, int] | None = None

    def make(self) -> nn.Module:
        """The network, on the CPU, initialised from torch's global generator: the built-in model,
        or the one ``model.factory`` returns (:mod:`~subsetsearch.train.factory`)."""
        if self.model.factory is None:
            return build_model(self.model.name, self.in_channels, self.num_classes, self.model.width)
        if self.input_size is None:
            raise ValueError("a model.factory network needs the input size")
        return call_factory(
            self.model.factory, num_classes=self.num_classes, in_channels=self.in_channels, input_size=self.input_size
        )

    def check(self) -> None:
        """InputError (one line naming the factory) unless ``model.factory`` builds a network whose
        output is logits of this data; nothing to check for a built-in model."""
        if self.model.factory is not None:
            if self.input_size is None:
                raise ValueError("a model.factory network needs the input size")
            check_factory(
                self.model.factory,
                num_classes=self.num_classes,
                in_channels=self.in_channels,
                input_size=self.input_size,
            )

    def build(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        net = self.make().to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return net

    @cached_property
    def channels_last(self) -> bool:
        """``train.channels_last``, except where torch's CPU kernels are unsafe with it.

        Measured with torch 2.13 (CPU): the backward pass of a channels-last 1×1 conv with stride 2
        and 2 to 7 input channels corrupts the heap (glibc aborts: "free(): invalid size"); ResNets
        of width < 8 have such projection shortcuts. Those run in the default layout.
        """
        if not self.train.channels_last:
            return False
        if self.device.type != "cpu":
            return True
        with torch.random.fork_rng(devices=[]):
            probe = self.make()
        return not any(
            isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1) and m.in_channels < 8
            for m in probe.modules()
        )

    @cached_property
    def bf16(self) -> bool:
        return use_bf16(self.train, self.device)

    @property
    def precision(self) -> str:
        """The precision this network trains and predicts in: ``"bf16"`` (autocast) or ``"fp32"``."""
        return "bf16" if self.bf16 else "fp32"

    def inputs(self, data: TensorData, x: torch.Tensor) -> torch.Tensor:
        out = (x.float() - data.mean) / data.std
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def forward(self, net: nn.Module, data: TensorData, x: torch.Tensor) -> torch.Tensor:
        """``net`` on raw images ``x`` of ``data``: normalised, in this network's layout and precision;
        float32 output."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return net(self.inputs(data, x)).float()


def augment(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop of each image padded by ``padding`` zeros, and a random horizontal flip."""
    b, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, channel, rows, cols]
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


def epoch_order(rows: np.ndarray, seed: int, epoch: int, batch_size: int) -> np.ndarray:
    """The order in which an epoch visits ``rows``: a permutation seeded by (seed, epoch), in which a
    row listed k times (multiplicity k) appears k times. A last batch of one is dropped (batch norm
    cannot train on it).
    """
    order = rows[np.random.default_rng([seed, epoch]).permutation(len(rows))]
    return order[:-1] if len(order) % batch_size == 1 else order


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


@dataclass
class RunRecord:
    """A finished training run: per-epoch history and where its best epoch is."""

    history: list[dict]
    best_epoch: int
    seconds: float

    def to_json(self) -> dict:
        return {"history": self.history, "best_epoch": self.best_epoch, "seconds": self.seconds}


def _save_model(net: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_weights(net: nn.Module, path: Path) -> None:
    """Load a checkpoint into ``net``; one line (``rundir.damaged``) when the file cannot be read."""
    try:
        state = load_file(str(path), device=str(next(net.parameters()).device))
    except FileNotFoundError:
        raise
    except Exception as error:  # safetensors' errors: a truncated or overwritten file
        raise damaged(Path(path), error) from None
    fit_weights(net, state, Path(path))


def fit_weights(net: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` (read from ``path``) into ``net``; one line when it does not fit: the weights
    come from another network (a ``model.factory`` changed since the run saved them)."""
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        lines = str(error).strip().splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0] if lines else "keys or shapes differ"
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        raise InputError(
            f"{path}: the saved weights do not fit the network ({detail.rstrip('.')}): the model changed since "
            "they were saved; restore it, or give another --run-dir"
        ) from None


def _read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads(handle.metadata()["state"])
        return load_file(str(path)), meta
    except Exception as error:  # safetensors' and JSON's errors: a truncated or overwritten file
        raise damaged(path, error) from None


@dataclass(frozen=True)
class TrainSpec:
    """One training run: where it lives, what it trains on and what it keeps.

    Attributes
    ----------
    folder : Path
        The run's folder (resumes from its ``state.safetensors``; done once ``done.json`` exists).
    rows : ndarray of int
        Pool rows to train on; repeats allowed (a multiset: a row listed k times is visited k times).
    seed : int
        Seeds the initial weights and every epoch's order and augmentation.
    save_epochs : frozenset of int
        Epochs whose weights are kept as ``epoch_EEE.safetensors`` (ensemble members).
    keep_best : bool
        Keep the best validation epoch as ``best.safetensors`` (a ``seeds`` ensemble's member).
    save_last : bool
        Keep the final weights as ``last.safetensors`` (subset models).
    init_from : Path, optional
        Start from these weights instead of a fresh initialisation (``pretrain``).
    lr : float, optional
        Base learning rate instead of ``train.lr``.
    """

    folder: Path
    rows: np.ndarray
    seed: int
    save_epochs: frozenset[int] = frozenset()
    keep_best: bool = False
    save_last: bool = False
    init_from: Path | None = None
    lr: float | None = None

    @property
    def files(self) -> TrainingRunFiles:
        """The files of the run's folder (their names are the run directory's, ``rundir.py``)."""
        return TrainingRunFiles(self.folder)


@dataclass
class _Run:
    """A run in progress: the model, its optimizer and the bookkeeping saved with every epoch."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    meta: dict
    base_lr: float


def train_run(
    spec: TrainSpec,
    network: Network,
    data: ImageRows,
    *,
    validation: TensorData | None = None,
    batch_loss: BatchLossFn | None = None,
    progress: ProgressFn | None = None,
) -> RunRecord:
    """Train one model on ``data`` rows ``spec.rows`` and store what ``spec`` asks for; resumable.

    ``batch_loss`` defaults to cross-entropy on augmented images (classification); the detector
    passes its own. Returns at once when the run is done already.
    """
    done = spec.files.done
    if done.is_file():
        record = read_json(done)
        return RunRecord(record["history"], record["best_epoch"], record["seconds"])
    if len(spec.rows) < 2:
        raise InputError(f"cannot train on {len(spec.rows)} sample(s); raise the budget")
    spec.folder.mkdir(parents=True, exist_ok=True)
    run = _start(spec, network)
    loss = batch_loss or classification_loss(network, data)
    for epoch in range(run.meta["epoch"] + 1, network.train.epochs + 1):
        if run.meta["stopped"]:
            break
        started = time.perf_counter()
        entry = _train_epoch(run, spec, network, data, loss, epoch, progress)
        if validation is not None and len(validation):
            entry["val_accuracy"] = accuracy(predict(network, run.net, validation), validation.y.cpu().numpy())
        run.meta["seconds"] += time.perf_counter() - started
        entry["seconds"] = run.meta["seconds"]
        run.meta["history"].append(entry)
        _advance_schedule(run.meta, entry, epoch, network.train)
        run.meta["epoch"] = epoch
        _save_epoch(run, spec, epoch)
    return _finish(run, spec)


def _start(spec: TrainSpec, network: Network) -> _Run:
    """A fresh model (or ``spec.init_from``'s), or the state of the last finished epoch."""
    config = network.train
    net = network.build(spec.seed)
    if spec.init_from is not None:
        load_weights(net, spec.init_from)
    base_lr = config.lr if spec.lr is None else spec.lr
    optimizer = torch.optim.SGD(
        net.parameters(), lr=base_lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    meta = new_run_state(base_lr)
    state_path = spec.files.state
    if state_path.is_file():
        tensors, meta = _read_state(state_path)
        fit_weights(net, {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, state_path)
        buffers = {int(k.split(".")[1]): v for k, v in tensors.items() if k.startswith("momentum.")}
        saved = optimizer.state_dict()
        saved["state"] = {i: {"momentum_buffer": buffer} for i, buffer in buffers.items()}
        optimizer.load_state_dict(saved)
    return _Run(net, optimizer, meta, base_lr)


def _epoch_lr(run: _Run, config: TrainConfig, epoch: int) -> float:
    if isinstance(config.schedule, PatienceSchedule):
        return run.meta["lr"]
    drops = sum(1 for m in config.milestones() if m < epoch)
    return run.base_lr * config.schedule.gamma**drops


def _train_epoch(
    run: _Run,
    spec: TrainSpec,
    network: Network,
    data: ImageRows,
    loss_of: BatchLossFn,
    epoch: int,
    progress: ProgressFn | None,
) -> dict:
    """One epoch over ``spec.rows`` in the order and augmentation seeded by (seed, epoch); its history entry."""
    config = network.train
    lr = _epoch_lr(run, config, epoch)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    order = epoch_order(np.asarray(spec.rows, dtype=np.int64), spec.seed, epoch, config.batch_size)
    generator = torch.Generator().manual_seed(_epoch_seed(spec.seed, epoch))
    run.net.train()
    total_loss, batches = 0.0, math.ceil(len(order) / config.batch_size)
    size = config.batch_size
    indices = [torch.from_numpy(order[b * size : (b + 1) * size]).to(network.device) for b in range(batches)]
    for b, (index, images) in enumerate(zip(indices, data.batches(indices), strict=True)):
        with torch.autocast(network.device.type, dtype=torch.bfloat16, enabled=network.bf16):
            loss = loss_of(run.net, images, index, generator)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        total_loss += loss.detach()
        if progress is not None:
            progress(f"epoch {epoch}/{config.epochs}", b + 1, batches)
    total_loss = float(total_loss)
    if not math.isfinite(total_loss):
        raise InputError(f"training diverged at epoch {epoch} (loss {total_loss}); lower train.lr")
    return {"epoch": epoch, "lr": lr, "train_loss": total_loss / batches}


def _save_epoch(run: _Run, spec: TrainSpec, epoch: int) -> None:
    """The checkpoints ``spec`` asks for at this epoch, then the state a resumed run continues from."""
    metadata = {"epoch": str(epoch), "seed": str(spec.seed)}
    if epoch in spec.save_epochs:
        _save_model(run.net, spec.files.checkpoint(epoch), metadata)
    if spec.keep_best and run.meta["best_epoch"] == epoch:
        _save_model(run.net, spec.files.best, metadata)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in run.net.state_dict().items()}
    for i, state in run.optimizer.state_dict()["state"].items():
        if state.get("momentum_buffer") is not None:
            tensors[f"momentum.{i}"] = state["momentum_buffer"].contiguous().cpu()
    with atomic_path(spec.files.state) as tmp:
        save_file(tensors, str(tmp), metadata={"state": json.dumps(run.meta)})


def _finish(run: _Run, spec: TrainSpec) -> RunRecord:
    meta = run.meta
    if meta["epoch"] < 1:
        raise RuntimeError("no epoch was trained")
    if spec.keep_best and not spec.files.best.is_file():
        raise RuntimeError(f"{spec.folder}: best.safetensors missing")
    if spec.save_last:
        _save_model(run.net, spec.files.last, {"epoch": str(meta["epoch"]), "seed": str(spec.seed)})
    record = RunRecord(meta["history"], meta["best_epoch"] or meta["epoch"], meta["seconds"])
    with atomic_path(spec.files.done) as tmp:
        tmp.write_text(json.dumps(record.to_json(), indent=1))
    return record


def classification_loss(
    network: Network,
    data: TensorData,
    *,
    on_logits: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> BatchLossFn:
    """Cross-entropy of the network on augmented images of ``data``.

    ``on_logits(logits, index)``, where given, sees each training batch's logits (detached) and its
    rows of ``data``: the zero-cost members of ``PoolScorer(members="train")`` come from it.
    """
    augment_config = network.train.augment

    def loss(net: nn.Module, images: torch.Tensor, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = augment(images, augment_config.crop_padding, augment_config.flip, generator)
        logits = net(network.inputs(data, x))
        if on_logits is not None:
            on_logits(logits.detach(), index)
        return F.cross_entropy(logits, data.y[index])

    return loss


def new_run_state(lr: float) -> dict:
    """The bookkeeping of a run before its first epoch (saved with every epoch's state)."""
    return {
        "epoch": 0,
        "lr": lr,
        "history": [],
        "best": -1.0,
        "best_epoch": 0,
        "since_best": 0,
        "last_drop": None,
        "gain_since_drop": False,
        "stopped": False,
        "seconds": 0.0,
    }


def stopped_on_patience(history: list[dict], config: TrainConfig) -> bool:
    """Whether a finished run's patience schedule stopped it (rather than ``config.epochs``), by
    replaying the schedule's rule over its history's validation accuracies. False for a milestone
    schedule or a run without validation."""
    if not isinstance(config.schedule, PatienceSchedule):
        return False
    meta = new_run_state(config.lr)
    for entry in history:
        _advance_schedule(meta, entry, int(entry["epoch"]), config)
        if meta["stopped"]:
            return True
    return False


def _advance_schedule(meta: dict, entry: dict, epoch: int, config: TrainConfig) -> None:
    """Best epoch bookkeeping and the patience schedule (drop ×gamma, stop after 2·P without gain)."""
    score = entry.get("val_accuracy")
    if score is None:  # no validation set: the last epoch is the best
        meta["best_epoch"] = epoch
        return
    if score > meta["best"]:
        meta["best"], meta["best_epoch"], meta["since_best"] = score, epoch, 0
        meta["gain_since_drop"] = True
    else:
        meta["since_best"] += 1
    schedule = config.schedule
    if not isinstance(schedule, PatienceSchedule):
        return
    patience = schedule.patience
    if meta["last_drop"] is not None and not meta["gain_since_drop"] and epoch - meta["last_drop"] >= 2 * patience:
        meta["stopped"] = True
    elif meta["since_best"] >= patience and (meta["last_drop"] is None or meta["gain_since_drop"]):
        # after a drop, wait for its gain (or stop at 2·P above); a gain restarts the count to the next drop
        meta["lr"] *= schedule.gamma
        meta["last_drop"], meta["gain_since_drop"] = epoch, False


@torch.inference_mode()
def predict(
    network: Network,
    net: nn.Module,
    data: TensorData,
    rows: np.ndarray | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Softmax probabilities [n, C] (float32) of ``net`` on ``data`` rows (all by default)."""
    net.eval()
    n = len(data) if rows is None else len(rows)
    out = np.empty((n, network.num_classes), dtype=np.float32)
    index_all = None if rows is None else torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(network.device)
    batches = math.ceil(n / INFERENCE_BATCH)
    bounds = [(b * INFERENCE_BATCH, min(n, (b + 1) * INFERENCE_BATCH)) for b in range(batches)]
    blocks = [slice(lo, hi) if index_all is None else index_all[lo:hi] for lo, hi in bounds]
    for b, ((lo, hi), x) in enumerate(zip(bounds, data.batches(blocks), strict=True)):
        out[lo:hi] = torch.softmax(network.forward(net, data, x), dim=1).cpu().numpy()
        if progress is not None:
            progress("scoring", b + 1, batches)
    return out


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax is the label."""
    return float(np.mean(np.argmax(probs, axis=1) == labels)) if len(labels) else float("nan")


def set_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
