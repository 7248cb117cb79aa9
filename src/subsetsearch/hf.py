"""A Hugging Face ``Trainer`` callback that scores the pool at the end of chosen epochs (``PoolScorer``).

Needs transformers: ``pip install 'subsetsearch[hf]'`` (``transformers`` and ``accelerate``, which
the ``Trainer`` needs).

The callback does what :class:`~subsetsearch.torch.PoolScorer` does in a hand-written loop:

- ``members="eval"`` (default): at the end of each chosen epoch the model predicts the pool once
  (eval mode, no gradient, every random generator restored: the training is the one without it);
- ``members="train"``: the epoch's member is the logits the model gave on its own training
  batches, read from the training forward pass itself (a forward hook: no extra pass). Each
  training item then carries its pool index under ``index_key`` (``"pool_index"``), which the
  callback takes out of the model's inputs before the model sees them; keep it in the batches
  with ``TrainingArguments(remove_unused_columns=False)``.

Epochs are counted as the ``Trainer`` counts them, from 1: the end of the first epoch is epoch 1
(``state.epoch``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from subsetsearch.internal.extras import MissingExtraError, install_line
from subsetsearch.stats import EnsembleStats
from subsetsearch.torch.scorer import PoolScorer

try:
    from transformers import TrainerCallback
except ImportError:
    raise MissingExtraError(
        f"subsetsearch.hf needs Hugging Face transformers, not installed; run: {install_line('hf')}"
    ) from None

__all__ = ["INDEX_KEY", "PoolScoringCallback", "logits_of"]

#: The key of an item's (and a batch's) pool index.
INDEX_KEY = "pool_index"
#: Keys of a pool batch that are not the model's inputs: its labels (the model would compute a loss).
LABEL_KEYS = ("labels", "label", "label_ids")


def logits_of(outputs: Any) -> torch.Tensor:
    """The class outputs a Hugging Face model returned: ``outputs.logits`` (a ``ModelOutput``, or a
    dict with ``"logits"``), or the tensor itself."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = outputs.get("logits") if isinstance(outputs, dict) else getattr(outputs, "logits", None)
    if logits is None:
        raise ValueError(
            f"the model returned a {type(outputs).__name__} without logits; give outputs_of= (outputs -> (n, C) tensor)"
        )
    return logits


class PoolScoringCallback(TrainerCallback):
    """Adds the model as an ensemble member at the end of each chosen training epoch of a ``Trainer``.

    Parameters
    ----------
    pool : torch.utils.data.Dataset or DataLoader
        The samples to score (``members="eval"``). Items are dicts of the model's inputs with the
        pool index under ``index_key`` (labels, if present, are left out of the inputs), or tuples
        ``(inputs, ..., index)`` as for :class:`~subsetsearch.torch.PoolScorer`. Give a DataLoader
        built with your data collator for inputs of different lengths (text).
    epochs : iterable of int
        The epochs whose end adds a member, counted from 1 as the ``Trainer`` counts them.
    stats : EnsembleStats, str or PathLike
        As :class:`~subsetsearch.torch.PoolScorer`: saved after every member, so a job resumed from
        a checkpoint (``trainer.train(resume_from_checkpoint=...)``) adds no epoch twice.
    index_key : str, default "pool_index"
        Where an item, and a training batch (``members="train"``), holds its pool index.
    outputs_of : callable (model outputs) -> Tensor (n, C), default :func:`logits_of`
        The class outputs from what the model returns.
    **options
        :class:`~subsetsearch.torch.PoolScorer`'s options: ``labels``, ``window``, ``members``,
        ``run``, ``batch_size``, ``from_logits``, ...

    Attributes
    ----------
    scorer : PoolScorer

    Notes
    -----
    Only the main process scores (``state.is_world_process_zero``). ``members="train"`` reads one
    process's batches and is refused in a multi-process run. An epoch resumed halfway from a
    checkpoint trains (and so records) only the batches after the checkpoint: its training-pass
    member holds those rows.

    Examples
    --------
    Epochs 3 to 5 as members, with the label statistics for EL2N, forgetting and Dyn-Unc::

        callback = PoolScoringCallback(pool, range(3, 6), "pool_stats.npz", labels=pool_labels)
        Trainer(model=model, args=args, train_dataset=train, callbacks=[callback]).train()
    """

    def __init__(
        self,
        pool: Dataset | DataLoader,
        epochs: Iterable[int],
        stats: EnsembleStats | str | os.PathLike,
        *,
        index_key: str = INDEX_KEY,
        outputs_of: Callable[[Any], torch.Tensor] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.index_key = index_key
        self.outputs_of = outputs_of or logits_of
        options.setdefault("forward", self._forward)
        options.setdefault("unpack", self._unpack)
        self.scorer = PoolScorer(pool, epochs, stats, **options)
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._epoch: int | None = None  # the epoch being trained, from 1
        self._index: Any = None  # the pool index of the training batch going through the model

    # -- the pool pass (members="eval") -------------------------------------------------------------

    def _unpack(self, batch: Any) -> tuple[Any, Any]:
        if isinstance(batch, dict):
            if self.index_key not in batch:
                raise ValueError(
                    f"a pool batch has no '{self.index_key}'; give each item its pool index under that key "
                    "(or index_key=)"
                )
            inputs = {k: v for k, v in batch.items() if k != self.index_key and k not in LABEL_KEYS}
            return inputs, batch[self.index_key]
        if isinstance(batch, tuple | list) and len(batch) >= 2:
            return batch[0], batch[-1]
        raise ValueError(f"each pool batch must be a dict with '{self.index_key}', or a tuple (inputs, ..., index)")

    def _forward(self, model: torch.nn.Module, inputs: Any) -> torch.Tensor:
        return self.outputs_of(model(**inputs) if isinstance(inputs, dict) else model(inputs))

    # -- the training pass ----------------------------------------------------------------------------

    def _take_index(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Forward pre-hook: the batch's pool index out of the model's inputs (kept for the outputs)."""
        if self.index_key in kwargs:
            kwargs = dict(kwargs)
            index = kwargs.pop(self.index_key)
            self._index = index if module.training else None
        elif module.training and self._recording():
            raise ValueError(
                f"members='train': a training batch has no '{self.index_key}'; give each training item its pool "
                f"index under that key and keep it in the batch with TrainingArguments(remove_unused_columns=False)"
            )
        return args, kwargs

    def _record(self, module: torch.nn.Module, args: tuple, kwargs: dict, outputs: Any) -> None:
        """Forward hook: a training batch's logits, with the index the pre-hook took, to the scorer."""
        if module.training and self._recording() and self._index is not None:
            index, self._index = self._index, None
            self.scorer.on_train_batch(self.outputs_of(outputs).detach(), index, self._epoch)

    def _recording(self) -> bool:
        return self.scorer.members == "train" and self._epoch is not None and self._epoch in self.scorer.epochs

    # -- the Trainer's events -------------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None, **kwargs):
        if model is None:
            raise ValueError("the Trainer gave the callback no model")
        if self.scorer.members == "train":
            if args.world_size > 1:
                raise ValueError(
                    "members='train' reads one process's training batches; use members='eval' in a multi-process run"
                )
            if args.remove_unused_columns:
                raise ValueError(
                    f"members='train' needs each training batch's '{self.index_key}', which the Trainer drops: set "
                    "TrainingArguments(remove_unused_columns=False)"
                )
        self._hooks = [
            model.register_forward_pre_hook(self._take_index, with_kwargs=True),
            model.register_forward_hook(self._record, with_kwargs=True),
        ]

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any):
        self._epoch = int((state.epoch or 0) + 1e-6) + 1  # a resumed epoch starts past its first batches

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None, **kwargs):
        epoch = self._epoch if self._epoch is not None else round(state.epoch)
        self._epoch, self._index = None, None
        if state.is_world_process_zero:
            self.scorer.on_epoch_end(model, epoch)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any):
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
