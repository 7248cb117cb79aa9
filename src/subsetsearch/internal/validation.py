"""The one place for the argument checks every layer makes: integers (never a bool), fractions,
finite positive numbers, class labels. Each raises ``error`` (``ValueError`` by default, the
command line's :class:`~subsetsearch.errors.InputError` where it names an option) with a message
that names the argument and the value received.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

__all__ = ["check_fraction", "check_integer", "check_labels", "check_positive"]


def _integer_phrase(minimum: int | None) -> str:
    if minimum is None:
        return "an integer"
    return "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"


def check_integer(value: object, name: str, *, minimum: int | None = None, error: type[ValueError] = ValueError) -> int:
    """``value`` as an ``int`` if it is an integer (Python or NumPy, not a bool) of at least
    ``minimum``; ``error`` naming ``name`` otherwise.

    >>> check_integer(3, "k", minimum=0)
    3
    >>> check_integer(True, "k")
    Traceback (most recent call last):
    ...
    ValueError: k must be an integer, got True
    """
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, int | np.integer)
        or (minimum is not None and value < minimum)
    ):
        raise error(f"{name} must be {_integer_phrase(minimum)}, got {value!r}")
    return int(value)


def check_fraction(
    value: object, name: str, *, upper_inclusive: bool = False, error: type[ValueError] = ValueError
) -> float:
    """``value`` as a float if it is a real number in [0, 1) (``upper_inclusive``: [0, 1]);
    ``error`` naming ``name`` otherwise."""
    high = 1.0
    inside = isinstance(value, Real) and not isinstance(value, bool) and 0.0 <= float(value)
    inside = inside and (float(value) <= high if upper_inclusive else float(value) < high)
    if not inside:
        interval = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise error(f"{name} must be a fraction in {interval}, got {value}")
    return float(value)


def check_positive(value: object, name: str, *, what: str = "number", error: type[ValueError] = ValueError) -> float:
    """``value`` as a float if it is a finite real number above 0 (``what`` says what it counts);
    ``error`` naming ``name`` otherwise (infinity and NaN included)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or not value > 0:
        raise error(f"{name} must be a positive {what}, got {value}")
    return float(value)


def check_labels(labels: object, num_samples: int, num_classes: int, *, function: str = "error_count") -> np.ndarray:
    """``labels`` as int64 of shape (N,) with every class in [0, C); ValueError saying what is wrong
    (``function`` names what needs them when they are missing)."""
    if labels is None:
        raise ValueError(f"{function} needs the labels of the pool (labels=..., --labels on the command line)")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != num_samples:
        raise ValueError(f"labels must have shape ({num_samples},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got values from {labels.min()} to {labels.max()}")
    return labels.astype(np.int64, copy=False)
