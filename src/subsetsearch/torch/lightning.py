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

    Notes
    -----
    In a multi-process run only global rank 0 scores (the whole pool), and every rank waits for it.

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
        **options: Any,
    ) -> None:
        super().__init__()
        self.scorer = PoolScorer(pool, epochs, stats, **options)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.is_global_zero:
            self.scorer.on_epoch_end(pl_module, trainer.current_epoch)
        trainer.strategy.barrier("subsetsearch_pool_scoring")
