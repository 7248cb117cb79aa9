"""The user-error type of every layer: bad input, named in one line with its fix.

``subsetsearch.cli`` prints an :class:`InputError` as one line on stderr and exits with code 2;
the Python API lets it through (it is a ``ValueError``).
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input: the message names the problem and the fix, in one line."""
