"""Seeds derived from the config seed and a purpose: one stream per use, so no two uses share random
numbers and a resumed run draws the same ones."""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["Seed", "derive_seed"]


class Seed(enum.IntEnum):
    """Purposes of derived seeds."""

    DATA = 0
    START = 1
    ENSEMBLE = 2
    SELECT = 3
    SUBSET_MODEL = 4
    BASELINE = 5


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from the config seed and the purpose/iteration/run numbers."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)
