"""subsetsearch: training-data subset search with ensemble active learning.

The core (``stats``, ``acquisition``, ``selection``) is NumPy arrays in,
arrays out, and imports no PyTorch::

    from subsetsearch import EnsembleStats, acquire, select
"""

from subsetsearch.acquisition import ACQUISITION_FUNCTIONS, acquire
from subsetsearch.selection import select
from subsetsearch.stats import EnsembleStats

__version__ = "0.2.0"

__all__ = ["ACQUISITION_FUNCTIONS", "EnsembleStats", "__version__", "acquire", "select"]
