"""Score the pool at the end of chosen epochs inside the user's own training loop.

The paper's checkpoint ensembles come "at no extra cost at train time": each chosen epoch's model
predicts the pool once and its predictions go straight into an EnsembleStats, so no checkpoint is
kept. The statistics are saved atomically after every member with their resume ledger (the
(run, epoch) members they hold, :mod:`subsetsearch.internal.ledger`), so a restarted job never adds
an epoch twice, and runs of several seeds add to one ensemble.

With ``labels`` the scorer also keeps a :class:`~subsetsearch.dynamics.TrainingDynamics` (EL2N,
forgetting, Dyn-Unc, cartography), beside the statistics in ``x.dynamics.npz``. With
``members="train"`` a member is not an extra pass over the pool but the outputs the model gave on
its own training batches during the epoch (``on_train_batch``), as forgetting and cartography were
defined: no inference at all.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from subsetsearch.dynamics import DEFAULT_WINDOW, TrainingDynamics, dynamics_path
from subsetsearch.internal.ledger import parse_poolscorer_member, poolscorer_member
from subsetsearch.internal.validation import check_integer
from subsetsearch.state import DynamicsPart, Part, ScoringState, StatsPart
from subsetsearch.stats import EnsembleStats, InvalidMemberError

__all__ = ["IndexedDataset", "PoolScorer"]

Unpack = Callable[[Any], tuple[Any, Any]]
Forward = Callable[[torch.nn.Module, Any], torch.Tensor]


class IndexedDataset(Dataset):
    """A map-style dataset whose items gain their position as the last element: ``(*item, index)``.

    For a pool dataset that yields ``(inputs, target)`` (or just ``inputs``): ``PoolScorer`` then
    finds each sample's pool index at the end of the item.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        A map-style dataset (``len`` and integer indexing).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple:
        item = self.dataset[index]
        return (*item, index) if isinstance(item, tuple | list) else (item, index)


class PoolScorer:
    """Adds one ensemble member per chosen epoch: the model's predictions on the whole pool.

    Parameters
    ----------
    pool : torch.utils.data.Dataset or DataLoader
        The samples to score. Each item (of a Dataset) or batch (of a DataLoader) is a tuple whose
        first element is the model's input and whose last is the sample's pool index (int, in
        [0, N)), e.g. ``(x, index)`` or ``(x, y, index)``; wrap a dataset without indices in
        :class:`IndexedDataset`. A Dataset is read in order in batches of ``batch_size``. Every
        chosen epoch must see the same samples, each once.
    epochs : iterable of int
        The epochs whose end adds a member, e.g. ``range(130, 151)``; other epochs are skipped.
    stats : EnsembleStats, str or PathLike
        The accumulator to add to, or an ``.npz`` path: loaded when it exists (the job resumes),
        otherwise created at the first member, and saved atomically after every member.
    run : str, default "0"
        Name of this training run (e.g. its seed). Members are (run, epoch) pairs, so several runs
        add to the same statistics (one after another), or save their own and merge later
        (``subsetsearch score --stats a.npz --stats b.npz``).
    num_samples : int, optional
        Pool size N; default ``len`` of the pool's dataset.
    from_logits : bool, default True
        The model returns logits (a softmax is applied); ``False``: probabilities.
    batch_size : int, default 512
        Batch size when ``pool`` is a Dataset.
    num_workers : int, default 0
        DataLoader workers when ``pool`` is a Dataset.
    forward : callable (model, inputs) -> Tensor of shape (n, C), optional
        How to get the class outputs from the model; default ``model(inputs)``.
    unpack : callable (batch) -> (inputs, index), optional
        How to split a batch; default ``(batch[0], batch[-1])``.
    labels : array-like of shape (N,), int, optional
        The pool's classes: also keep the label statistics of the members
        (:class:`~subsetsearch.dynamics.TrainingDynamics`, in epoch order), saved beside a
        ``stats`` path as ``x.dynamics.npz`` for ``subsetsearch score --stats x.npz --function el2n``.
        They follow one run's epochs: give each run its own ``stats`` file.
    window : int, default 10
        Dyn-Unc's window J of the label statistics.
    members : {"eval", "train"}, default "eval"
        ``"eval"``: at the end of a chosen epoch the model predicts the whole pool (eval mode, one
        inference pass). ``"train"``: the epoch's member is what the model output on its training
        batches, handed over with :meth:`on_train_batch` (train mode, augmented inputs, weights
        changing through the epoch, no inference pass); rows an epoch did not train on are not in
        its member. The epoch's outputs wait in a float32 [N, C] buffer (4 bytes per sample and
        class) and are added at its end. One statistics file holds members of one kind.

    Attributes
    ----------
    stats : EnsembleStats or None
        The statistics (None until the first member when they start empty from a path).
    dynamics : TrainingDynamics or None
        The label statistics, with ``labels``.
    path : Path or None
        Where they are saved.

    Notes
    -----
    A member is scored under ``torch.inference_mode()`` in ``eval`` mode (the model's mode is
    restored after), on the model's device, with every random number generator (Python, NumPy,
    torch on CPU and the model's CUDA device) restored afterwards: a run with scoring trains
    exactly the same models as one without. A member is added whole or not at all: it is first
    accumulated on its own (a second N x C accumulator, 10 bytes per sample and class) and merged
    when its pass is complete.

    Examples
    --------
    In a training loop, ``scorer.on_epoch_end(model, epoch)`` after each epoch's training:

    >>> from torch.utils.data import TensorDataset
    >>> pool = IndexedDataset(TensorDataset(torch.rand(6, 3)))  # items (x, index)
    >>> model = torch.nn.Linear(3, 2)
    >>> scorer = PoolScorer(pool, epochs=[2, 3], stats=EnsembleStats(6, 2))
    >>> [scorer.on_epoch_end(model, epoch) for epoch in (1, 2, 3, 3)]
    [False, True, True, False]
    >>> scorer.held, scorer.stats.member_counts.tolist()
    ([('0', 2), ('0', 3)], [2, 2, 2, 2, 2, 2])
    """

    def __init__(
        self,
        pool: Dataset | DataLoader,
        epochs: Iterable[int],
        stats: EnsembleStats | str | os.PathLike,
        *,
        run: str = "0",
        num_samples: int | None = None,
        from_logits: bool = True,
        batch_size: int = 512,
        num_workers: int = 0,
        forward: Forward | None = None,
        unpack: Unpack | None = None,
        labels: Any = None,
        window: int = DEFAULT_WINDOW,
        members: str = "eval",
    ) -> None:
        if members not in ("eval", "train"):
            raise ValueError(f"members must be 'eval' or 'train', got {members!r}")
        self.members = members
        if isinstance(pool, DataLoader):
            self.loader = pool
        elif isinstance(pool, Dataset):
            self.loader = DataLoader(pool, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        else:
            raise ValueError(f"pool must be a torch Dataset or DataLoader, got {type(pool).__name__}")
        self.epochs = {_epoch(epoch) for epoch in epochs}
        if not self.epochs:
            raise ValueError("epochs is empty; give the epochs whose end adds a member, e.g. range(130, 151)")
        if not isinstance(run, str) or not run:
            raise ValueError(f"run must be a non-empty string naming the training run, got {run!r}")
        self.run = run
        self.from_logits = from_logits
        self.forward = forward or (lambda model, inputs: model(inputs))
        self.unpack = unpack or _default_unpack
        self.path: Path | None = None
        if isinstance(stats, EnsembleStats):
            stats_part = StatsPart.of(stats)
        elif isinstance(stats, str | os.PathLike):
            self.path = Path(stats)
            if self.path.suffix.lower() != ".npz":
                raise ValueError(f"stats path '{self.path}' must end in .npz")
            stats_part = StatsPart.open(self.path)  # ValueError naming the file if it is not one
        else:
            raise ValueError(f"stats must be an EnsembleStats or a .npz path, got {type(stats).__name__}")
        self.num_samples = _pool_size(self.loader, num_samples, stats_part.stats)
        held = stats_part.stats
        kind = None if held is None else held.metadata.get("pool_scorer_members", "eval")
        if kind is not None and stats_part.ledger.members and kind != members:
            raise ValueError(f"the statistics hold members='{kind}' members; give members='{kind}' or another file")
        parts: list[Part] = [stats_part]
        dynamics_part = None
        if labels is not None:
            labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
            if labels.shape != (self.num_samples,):
                raise ValueError(f"labels must have shape ({self.num_samples},), the pool's size; got {labels.shape}")
            saved = None if self.path is None else dynamics_path(self.path)
            dynamics_part = DynamicsPart(None, saved)
            if saved is not None and saved.exists():
                dynamics_part = DynamicsPart.load(saved)
                if not np.array_equal(dynamics_part.dynamics.labels, labels) or dynamics_part.dynamics.window != window:
                    raise ValueError(f"'{saved}' holds label statistics of other labels or another window")
            self._labels, self._window = labels, window
            parts.append(dynamics_part)
        self._stats, self._dynamics = stats_part, dynamics_part
        #: Saves after every member (the policy of a PoolScorer), label statistics first.
        self._state = ScoringState(*parts, state_elements=0)
        #: (epoch, its recorded training outputs [N, C] float32 or None, the rows they hold)
        self._pending: tuple[int, np.ndarray | None, np.ndarray] | None = None

    @property
    def stats(self) -> EnsembleStats | None:
        """The statistics (None until the first member when they start empty from a path)."""
        return self._stats.stats

    @property
    def dynamics(self) -> TrainingDynamics | None:
        """The label statistics (with ``labels``; None until the first member when new)."""
        return None if self._dynamics is None else self._dynamics.dynamics

    @property
    def held(self) -> list[tuple[str, int]]:
        """The (run, epoch) members the statistics hold, in the order they were added."""
        return [parse_poolscorer_member(name) for name in self._stats.ledger.members]

    def on_epoch_end(self, model: torch.nn.Module | None, epoch: int) -> bool:
        """Add the epoch's member if ``epoch`` is chosen and not held yet; save; True if added.

        ``members="eval"``: the model predicts the pool now. ``members="train"``: the training
        batches recorded with :meth:`on_train_batch` during the epoch become the member (``model``
        is not used and may be None).

        Raises
        ------
        ValueError
            If the model's outputs are not finite, not (n, C) for a batch of n, or not the classes
            of the statistics; or the pool yields an index out of range or twice, or other samples
            than earlier members saw; or (``"train"``) no batch of a chosen epoch was recorded.
            The statistics are then unchanged.
        """
        epoch = _epoch(epoch)
        name = poolscorer_member(self.run, epoch)
        if epoch not in self.epochs or not self._lacks(name):
            self._pending = None
            return False
        if self.members == "train":
            member, dynamics = self._training_member(epoch)
        else:
            member, dynamics = self._score(model, epoch)
        self._commit(name, member, dynamics)
        return True

    def on_train_batch(self, outputs: torch.Tensor, index: Any, epoch: int) -> None:
        """Record the model's outputs on one training batch of a chosen epoch (``members="train"``).

        Parameters
        ----------
        outputs : Tensor of shape (n, C)
            The class outputs the training step computed (logits, or probabilities with
            ``from_logits=False``); detached and copied to the CPU here.
        index : Tensor or array of shape (n,), int
            The batch's pool indices.
        epoch : int
            The epoch being trained; its end (``on_epoch_end``) adds the member.

        Raises
        ------
        ValueError
            As :meth:`on_epoch_end`, and if a row comes twice in one epoch (a sampler with
            replacement) or the scorer was made with ``members="eval"``.
        """
        if self.members != "train":
            raise ValueError("on_train_batch records training-pass members: make the PoolScorer with members='train'")
        epoch = _epoch(epoch)
        if epoch not in self.epochs or not self._lacks(poolscorer_member(self.run, epoch)):
            return
        with torch.no_grad():
            values = outputs.detach().float().cpu().numpy()
        seen = self._pending_seen(epoch)
        size = len(index)
        if values.ndim != 2 or values.shape[0] != size:
            raise ValueError(
                f"epoch {epoch}: outputs of shape {tuple(values.shape)} for a batch of {size} samples; "
                "give the (n, C) class outputs"
            )
        _, buffer, _ = self._pending
        classes = self.stats.num_classes if self.stats is not None else values.shape[1]
        if values.shape[1] != (classes if buffer is None else buffer.shape[1]):
            raise ValueError(f"epoch {epoch}: outputs of {values.shape[1]} classes, but the statistics hold {classes}")
        rows = self._rows(index, seen, epoch)  # marks the rows seen: last, once the batch is known good
        if buffer is None:
            buffer = np.zeros((self.num_samples, values.shape[1]), dtype=np.float32)
            self._pending = (epoch, buffer, seen)
        buffer[rows] = values  # a copy per batch; the statistics are computed once, at the epoch's end

    def _pending_seen(self, epoch: int) -> np.ndarray:
        """The rows the epoch's recorded batches hold so far (a new epoch starts empty)."""
        if self._pending is None or self._pending[0] != epoch:
            self._pending = (epoch, None, np.zeros(self.num_samples, dtype=bool))
        return self._pending[2]

    def _training_member(self, epoch: int) -> tuple[EnsembleStats, TrainingDynamics | None]:
        """The epoch's recorded training outputs as a member: the rows the epoch trained on."""
        if self._pending is None or self._pending[0] != epoch or self._pending[1] is None:
            raise ValueError(f"epoch {epoch}: no training batch was recorded; call on_train_batch for its batches")
        _, buffer, seen = self._pending
        self._pending = None
        rows = np.flatnonzero(seen)
        member, dynamics = self._empty(buffer.shape[1], epoch)
        self._add(member, dynamics, buffer[rows], rows, epoch)
        return member, dynamics

    def _lacks(self, name: str) -> bool:
        """The member is missing from the statistics, or from the label statistics."""
        return bool(self._state.lacking(name))

    def _commit(self, name: str, member: EnsembleStats, dynamics: TrainingDynamics | None) -> None:
        """Merge a whole member into what lacks it, and save (label statistics first)."""
        lacking = self._state.lacking(name)
        if dynamics is not None and self._dynamics in lacking:
            try:
                self._dynamics.merge(dynamics)
            except ValueError:
                raise ValueError(
                    f"{name}: the label statistics follow one run's epochs in order and hold later epochs "
                    f"already; give each run its own stats= file"
                ) from None
            self._state.record(self._dynamics, name)
        if self._stats in lacking:
            self._stats.merge(member)
            self._stats.stats.metadata["pool_scorer_members"] = self.members
            self._state.record(self._stats, name)
        self._state.save()

    def _add(self, member: EnsembleStats, dynamics: TrainingDynamics | None, values, rows, epoch: int) -> None:
        try:
            member.update(values, index=rows, from_logits=self.from_logits)
            if dynamics is not None:
                dynamics.update(values, index=rows, position=epoch, from_logits=self.from_logits)
        except InvalidMemberError as error:
            raise ValueError(f"epoch {epoch}: {error}") from None

    def _score(self, model: torch.nn.Module, epoch: int) -> tuple[EnsembleStats, TrainingDynamics | None]:
        """The member's statistics (and label statistics) on their own: one pass over the pool."""
        if model is None:
            raise ValueError(f"epoch {epoch}: members='eval' scores the model: pass it to on_epoch_end")
        device = _device_of(model)
        seen = np.zeros(self.num_samples, dtype=bool)
        member = dynamics = None
        was_training = model.training
        model.eval()
        try:
            with _rng_kept(device), torch.inference_mode():
                for batch in self.loader:
                    inputs, index = self.unpack(batch)
                    rows = self._rows(index, seen, epoch)
                    outputs = self.forward(model, _to_device(inputs, device))
                    values = outputs.detach().float().cpu().numpy()
                    if values.ndim != 2 or values.shape[0] != rows.size:
                        raise ValueError(
                            f"epoch {epoch}: the model gave outputs of shape {tuple(values.shape)} for a batch of "
                            f"{rows.size} samples; it must give (n, C) class outputs (see forward=)"
                        )
                    if member is None:
                        member, dynamics = self._empty(values.shape[1], epoch)
                    self._add(member, dynamics, values, rows, epoch)
        finally:
            model.train(was_training)
        if member is None:
            raise ValueError(f"epoch {epoch}: the pool yielded no sample")
        self._check_coverage(seen, epoch)
        return member, dynamics

    def _empty(self, num_classes: int, epoch: int) -> tuple[EnsembleStats, TrainingDynamics | None]:
        """A member's own accumulators: statistics, and label statistics with ``labels``."""
        if self.stats is not None and num_classes != self.stats.num_classes:
            raise ValueError(
                f"epoch {epoch}: the model gave {num_classes} classes but the statistics hold {self.stats.num_classes}"
            )
        dynamics = None
        if self._dynamics is not None:
            labels = self.dynamics.labels if self.dynamics is not None else self._labels
            window = self.dynamics.window if self.dynamics is not None else self._window
            try:
                dynamics = TrainingDynamics(labels, num_classes=num_classes, window=window)
            except ValueError as error:
                raise ValueError(f"labels: {error}") from None
        return EnsembleStats(self.num_samples, num_classes), dynamics

    def _rows(self, index: Any, seen: np.ndarray, epoch: int) -> np.ndarray:
        rows = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(
                f"epoch {epoch}: the pool's index must be a 1-D batch of integers, got {rows.dtype} of shape "
                f"{rows.shape}; items must end with the sample's pool index (see IndexedDataset, unpack=)"
            )
        if rows.size and (rows.min() < 0 or rows.max() >= self.num_samples):
            raise ValueError(f"epoch {epoch}: the pool yielded an index outside [0, {self.num_samples})")
        if seen[rows].any() or np.unique(rows).size != rows.size:
            raise ValueError(
                f"epoch {epoch}: the pool yielded a sample twice in one pass; it must yield each once "
                "(no drop_last, no sampler with replacement)"
            )
        seen[rows] = True
        return rows.astype(np.int64, copy=False)

    def _check_coverage(self, seen: np.ndarray, epoch: int) -> None:
        earlier = None if self.stats is None else self.stats.member_counts > 0
        if earlier is not None and earlier.any() and not np.array_equal(seen, earlier):
            raise ValueError(
                f"epoch {epoch}: the pool yielded {int(seen.sum())} samples but earlier members scored "
                f"{int(earlier.sum())} (or other ones); every member must see the same samples"
            )


def _epoch(epoch: Any) -> int:
    return check_integer(epoch, "an epoch")


def _default_unpack(batch: Any) -> tuple[Any, Any]:
    if not isinstance(batch, tuple | list) or len(batch) < 2:
        raise ValueError(
            "each pool batch must be a tuple (inputs, ..., index); wrap the dataset in IndexedDataset or give unpack="
        )
    return batch[0], batch[-1]


def _pool_size(loader: DataLoader, num_samples: int | None, stats: EnsembleStats | None) -> int:
    if num_samples is None:
        if stats is not None:
            num_samples = stats.num_samples
        elif isinstance(loader.dataset, IterableDataset) or not hasattr(loader.dataset, "__len__"):
            raise ValueError("the pool's dataset has no length; give num_samples= (the pool size N)")
        else:
            num_samples = len(loader.dataset)
    num_samples = check_integer(num_samples, "num_samples", minimum=1)
    if stats is not None and stats.num_samples != num_samples:
        raise ValueError(f"the saved statistics hold {stats.num_samples} samples but the pool has {num_samples}")
    return int(num_samples)


def _device_of(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=True)
    if isinstance(inputs, tuple | list):
        return type(inputs)(_to_device(value, device) for value in inputs)
    if isinstance(inputs, dict):
        return {key: _to_device(value, device) for key, value in inputs.items()}
    return inputs


@contextlib.contextmanager
def _rng_kept(device: torch.device) -> Iterator[None]:
    """Restore Python's, NumPy's and torch's random state after the block: a pass over the pool
    (a DataLoader draws a base seed from torch's generator) must not change the training that follows."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
