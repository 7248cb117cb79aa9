"""Checks shared by the core's accumulators: the pool rows a member covers, and its values as
probabilities or logits."""

from __future__ import annotations

import numpy as np

#: Row sums further than this from 1 are rejected (float16 carries ~3 digits).
SUM_TOLERANCE = {np.dtype(np.float16): 1e-2, np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-3}


def sum_tolerance(dtype: np.dtype) -> float:
    """How far from 1 a row of ``dtype`` may sum."""
    return SUM_TOLERANCE[np.dtype(dtype)]


def check_probability_matrix(probs: np.ndarray, num_classes: int) -> np.ndarray:
    if not isinstance(probs, np.ndarray):
        probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise ValueError(f"probs must have shape (n, {num_classes}), got {probs.shape}")
    if probs.dtype not in SUM_TOLERANCE:
        raise ValueError(f"probs must be float16, float32 or float64, got {probs.dtype}")
    return probs


def softmax_rows(logits: np.ndarray) -> np.ndarray | None:
    """Row softmax computed after subtracting the row maximum; None if not finite."""
    dtype = np.float64 if logits.dtype == np.float64 else np.float32
    z = np.array(logits, dtype=dtype)
    if not np.isfinite(z).all():
        return None
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


#: Row sums further than this from 1 are rejected after a softmax of logits (computed in float32).
LOGITS_TOLERANCE = 1e-3


def kernel_values(chunk: np.ndarray, from_logits: bool) -> tuple[np.ndarray | None, float]:
    """What the compiled kernels read, and the row-sum tolerance: probabilities (float16 as their
    uint16 bits), or the softmax of logits (None where the logits are not finite)."""
    if from_logits:
        return softmax_rows(chunk), LOGITS_TOLERANCE
    values = np.ascontiguousarray(chunk)
    tolerance = sum_tolerance(values.dtype)
    return (values.view(np.uint16) if values.dtype == np.float16 else values), tolerance


def logits_problem(chunk: np.ndarray, rows: np.ndarray) -> str:
    first = int(np.flatnonzero(~np.isfinite(chunk).all(axis=1))[0])
    return f"logits of sample {rows[first]} are not finite (NaN or inf)"


def probability_problem(chunk: np.ndarray, rows: np.ndarray, bad: np.ndarray, tolerance: float) -> str:
    first = int(np.flatnonzero(bad)[0])
    values = chunk[first].astype(np.float64)
    where = f"sample {rows[first]}"
    if not np.isfinite(values).all():
        return f"probabilities of {where} contain NaN or inf"
    if values.min() < 0:
        return (
            f"probabilities of {where} contain a negative value ({values.min():.4g}); if these are logits, pass "
            "from_logits=True (--logits on the command line)"
        )
    return (
        f"probabilities of {where} sum to {values.sum():.6g}, not 1 (tolerance {tolerance:g}); "
        "if these are logits, pass from_logits=True (--logits on the command line)"
    )


def pool_rows(index: np.ndarray | slice | None, n: int | None, num_samples: int) -> np.ndarray:
    """The pool rows (int64) that ``index`` names for ``n`` rows of data, checked: ``None`` is all
    ``num_samples`` rows in order; ValueError for rows out of range, repeated, or not ``n`` of them."""
    if index is None:
        if n != num_samples:
            raise ValueError(f"probs has {n} rows but the pool has {num_samples}; pass index= to update only some rows")
        return np.arange(n, dtype=np.int64)
    if isinstance(index, slice):
        rows = np.arange(num_samples, dtype=np.int64)[index]
    else:
        rows = np.asarray(index)
        if rows.ndim != 1 or not (np.issubdtype(rows.dtype, np.integer) or rows.size == 0):
            raise ValueError(f"index must be a 1-D array of integers, got shape {rows.shape} {rows.dtype}")
        rows = rows.astype(np.int64, copy=False)
        if rows.size and (rows.min() < 0 or rows.max() >= num_samples):
            raise ValueError(f"index holds rows outside [0, {num_samples})")
        if np.unique(rows).size != rows.size:
            raise ValueError("index repeats a row; a member adds each row once")
    if n is not None and rows.size != n:
        raise ValueError(f"index selects {rows.size} rows but the data has {n}")
    return rows
