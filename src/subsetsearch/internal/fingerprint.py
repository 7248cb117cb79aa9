"""Fingerprints of the inputs that determine a piece of work: a study shares work by them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

__all__ = ["fingerprint"]


def fingerprint(*parts: object) -> str:
    """A SHA-256 (hex) of ``parts``: JSON-like values (dicts, lists, strings, numbers, None, paths)
    and NumPy arrays (their dtype, shape and bytes). Equal inputs give equal fingerprints; a dict's
    key order does not matter.

    >>> fingerprint({"a": 1, "b": [2, 3]}) == fingerprint({"b": [2, 3], "a": 1})
    True
    >>> fingerprint(np.arange(3)) == fingerprint(np.arange(3, dtype=np.int32))
    False
    """
    return hashlib.sha256(json.dumps(parts, default=_plain, sort_keys=True).encode()).hexdigest()


def _plain(value: object) -> object:
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        digest = hashlib.sha256(data.tobytes()).hexdigest()
        return {"array": digest, "dtype": str(data.dtype), "shape": list(data.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")
