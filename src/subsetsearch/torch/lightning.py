"""A PyTorch Lightning callback that scores the pool at the end of chosen epochs (``PoolScorer``).

Needs Lightning: ``pip install 'subsetsearch[lightning]'`` (``lightning``; the older
``pytorch_lightning`` package works too).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from torch.utils.data import DataLoader, Dataset

from subsetsearch.internal.extras import MissingExtraError, install_line
from subsetsearch.stats import EnsembleStats
from subsetsearch.torch.scorer import PoolScorer

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError:  # the standalone package of Lightning before 2.0's rename
    try:
        from pytorch_lightning import Callback, LightningModule, Trainer
    except ImportError:
        raise MissingExtraError(
            f"subsetsearch.torch.lightning needs PyTorch Lightning, not installed; run: {install_line('lightning')}"
        ) from None

__all__ = ["PoolScoringCallback"]


class PoolScoringCallback(Callback):
    """Adds the model as an ensemble member at the end of each chosen training epoch.

    Parameters
    ----------
    pool, epochs, stats, **options
        As :class:`~subsetsearch.torch.PoolScorer`. Epochs are Lightning's ``trainer.current_epoch``,
        counted from 0. The statistics are saved after every member, so ``trainer.fit(...,
        ckpt_path=...)`` after a crash adds no epoch twice.

    Attributes
    ----------
    scorer : PoolScorer

    outputs_of : callable (outputs of training_step) -> Tensor (n, C), optional
        With ``members="train"``: the class outputs of a training batch, from what your
        ``training_step`` returns; default ``outputs["logits"]`` (return ``{"loss": loss,
        "logits": logits}``). The batch's pool indices come from the batch (``unpack=``).

    Notes
    -----
    In a multi-process run only global rank 0 scores (the whole pool), and every rank waits for it.
    With ``members="train"`` every rank's training outputs and indices are gathered to rank 0.

    Examples
    --------
    Epochs 10 to 14 of 15 (counted from 0) as members, saved in ``pool_stats.npz``::

        callback = PoolScoringCallback(IndexedDataset(pool), range(10, 15), "pool_stats.npz")
        Trainer(max_epochs=15, callbacks=[callback]).fit(module, train_loader)
    """

    def __init__(
        self,
        pool: Dataset | DataLoader,
        epochs: Iterable[int],
        stats: EnsembleStats | str | os.PathLike,
        *,
        outputs_of: Any = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.scorer = PoolScorer(pool, epochs, stats, **options)
        self.outputs_of = outputs_of or _logits_of

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.scorer.members != "train" or trainer.sanity_checking:
            return
        if trainer.current_epoch not in self.scorer.epochs:
            return
        logits = self.outputs_of(outputs)
        index = self.scorer.unpack(batch)[1]
        if trainer.world_size > 1:  # every rank's batch, on rank 0
            logits = pl_module.all_gather(logits.detach()).flatten(0, 1)
            index = pl_module.all_gather(index).flatten(0, 1)
        if trainer.is_global_zero:
            self.scorer.on_train_batch(logits, index, trainer.current_epoch)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.is_global_zero:
            self.scorer.on_epoch_end(pl_module, trainer.current_epoch)
        trainer.strategy.barrier("subsetsearch_pool_scoring")


def _logits_of(outputs: Any):
    """The class outputs a training step returned: ``outputs["logits"]``."""
    if isinstance(outputs, dict) and "logits" in outputs:
        return outputs["logits"]
    raise ValueError(
        "members='train' needs the training batch's class outputs: return {'loss': loss, 'logits': logits} "
        "from training_step, or give outputs_of="
    )
