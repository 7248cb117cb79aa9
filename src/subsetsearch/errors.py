"""The user-error type of every layer, bad input named in one line with its fix, and the warning of
an answer that may not be what was meant.

``subsetsearch.cli`` prints an :class:`InputError` as one line on stderr and exits with code 2, and a
:class:`SubsetsearchWarning` as one line on stderr; the Python API raises the error (it is a
``ValueError``) and issues the warning (``warnings``).
"""

from __future__ import annotations

__all__ = ["InputError", "SubsetsearchWarning"]


class InputError(ValueError):
    """Bad user input: the message names the problem and the fix, in one line."""


class SubsetsearchWarning(UserWarning):
    """An answer that may not be what was meant (a warning, in one line: the command line prints it
    on stderr as ``subsetsearch: warning: ...``)."""
