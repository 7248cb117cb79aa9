"""Scoring inside your own PyTorch training loop (imports torch; the core does not).

``PoolScorer`` adds one ensemble member per chosen epoch; ``subsetsearch.torch.lightning`` holds
the PyTorch Lightning callback (``pip install 'subsetsearch[lightning]'``).
"""

from subsetsearch.internal.extras import require_extra

require_extra("train", what="subsetsearch.torch")

from subsetsearch.torch.scorer import IndexedDataset, PoolScorer  # noqa: E402  (after the check)

__all__ = ["IndexedDataset", "PoolScorer"]
