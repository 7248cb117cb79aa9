"""The optional parts of the package and the one-line error that names the extra to install.

``pip install subsetsearch`` installs the core and ``subsetsearch score`` only (no PyTorch). The
extras bring the rest (``pyproject.toml`` lists the same packages):

- ``train``: ``run``, ``report``, ``study`` and ``subsetsearch.torch``;
- ``ray``: ``--executor ray``; ``zarr``: Zarr member files and pools;
- ``lightning``: ``subsetsearch.torch.lightning``; ``hf``: ``subsetsearch.hf`` (the Hugging Face
  ``Trainer``'s callback); ``all``: every one of them.
"""

from __future__ import annotations

import importlib.util

#: The modules each extra brings, by import name, with the name pip installs them under.
EXTRAS: dict[str, dict[str, str]] = {
    "train": {
        "torch": "torch",
        "safetensors": "safetensors",
        "pydantic": "pydantic",
        "yaml": "pyyaml",
        "PIL": "pillow",
        "sklearn": "scikit-learn",
        "matplotlib": "matplotlib",
        "pycocotools": "pycocotools",
    },
    "ray": {"ray": "ray"},
    "zarr": {"zarr": "zarr"},
    "lightning": {"lightning": "lightning"},
    "hf": {"transformers": "transformers", "accelerate": "accelerate"},
}


class MissingExtraError(ImportError):
    """A command or module needs an extra that is not installed; the message names the fix."""


def install_line(extra: str) -> str:
    """The command that installs ``extra``."""
    return f"pip install 'subsetsearch[{extra}]'"


def missing_modules(extra: str, *, only: tuple[str, ...] | None = None) -> list[str]:
    """The packages of ``extra`` (pip names) that cannot be imported here; nothing is imported.

    ``only``: check these of its modules (import names), not all of them.
    """
    modules = EXTRAS[extra] if only is None else {module: EXTRAS[extra][module] for module in only}
    return [package for module, package in modules.items() if importlib.util.find_spec(module) is None]


def require_extra(extra: str, *, what: str, only: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtraError` naming the install line when ``extra`` is incomplete.

    Checks before any work starts, so a command without its extra writes nothing. ``only`` checks
    the modules a command really imports (``report`` reads run directories without PyTorch).

    >>> require_extra("no-such-extra", what="x")
    Traceback (most recent call last):
    ...
    KeyError: 'no-such-extra'
    """
    absent = missing_modules(extra, only=only)
    if absent:
        raise MissingExtraError(f"{what} needs {', '.join(absent)}, not installed here; run: {install_line(extra)}")


def extra_of(module_name: str) -> str | None:
    """The extra that brings the module ``module_name`` (``torch.nn`` -> ``train``), or None."""
    top = module_name.partition(".")[0]
    return next((extra for extra, modules in EXTRAS.items() if top in modules), None)
