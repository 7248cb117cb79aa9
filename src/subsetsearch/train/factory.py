"""Your own network in ``subsetsearch run``: ``model.factory`` found, called and checked.

A factory is ``"package.module:callable"`` (imported like any module) or
``"path/to/script.py:callable"`` (a script loaded from its file; the config makes a relative path
start at the config's folder). It is called as ``callable(num_classes=C, in_channels=c,
input_size=(H, W))`` after ``torch.manual_seed`` (so its initial weights follow the run's seed) and
must return a ``torch.nn.Module`` whose output on a float batch ``[B, c, H, W]`` is logits
``[B, C]``. Whatever goes wrong (the import, the call, the return value, the output's shape) is
an :class:`~subsetsearch.errors.InputError` of one line that names the factory, raised before a
run writes anything.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from subsetsearch.errors import InputError
from subsetsearch.train.settings import is_script


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _script(path: Path, factory: str) -> object:
    """The module of a factory script, loaded once per process under a name derived from its path."""
    if not path.is_file():
        raise InputError(f"model.factory '{factory}': {path} not found; a relative path starts at the config's folder")
    name = "subsetsearch_factory_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"model.factory '{factory}': {path} cannot be loaded as a Python module; give a .py file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # the script may import its neighbours while it loads
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise InputError(f"model.factory '{factory}': loading {path} failed ({_first_line(error)})") from None
    finally:
        sys.path.remove(folder)
    return module


def load_factory(factory: str) -> Callable[..., object]:
    """The callable that ``factory`` names; InputError (one line naming it) when it cannot be had."""
    target, _, attribute = factory.rpartition(":")
    if is_script(target):
        module = _script(Path(target), factory)
    else:
        try:
            module = importlib.import_module(target)
        except Exception as error:
            raise InputError(
                f"model.factory '{factory}': importing {target} failed ({_first_line(error)}); install it or "
                "put its folder on PYTHONPATH"
            ) from None
    found: object = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise InputError(
                f"model.factory '{factory}': {target} has no '{attribute}'; check the name after the colon"
            )
        found = getattr(found, part)
    if not callable(found):
        raise InputError(
            f"model.factory '{factory}': '{attribute}' is a {type(found).__name__}, not a function or class"
        )
    return found


def call_factory(factory: str, *, num_classes: int, in_channels: int, input_size: tuple[int, int]) -> nn.Module:
    """The network ``factory`` returns for this data; InputError naming the factory when it fails or
    returns something other than a ``torch.nn.Module``."""
    build = load_factory(factory)
    arguments = f"num_classes={num_classes}, in_channels={in_channels}, input_size={tuple(input_size)}"
    try:
        net = build(num_classes=num_classes, in_channels=in_channels, input_size=tuple(input_size))
    except Exception as error:
        raise InputError(
            f"model.factory '{factory}' failed when called with {arguments} ({_first_line(error)})"
        ) from None
    if not isinstance(net, nn.Module):
        raise InputError(
            f"model.factory '{factory}' returned a {type(net).__name__}, not a torch.nn.Module; return the network"
        )
    if not any(parameter.requires_grad for parameter in net.parameters()):
        raise InputError(f"model.factory '{factory}' returned a network with no trainable parameters")
    return net


def check_factory(factory: str, *, num_classes: int, in_channels: int, input_size: tuple[int, int]) -> None:
    """Build the network once and run it on a batch of two blank images: InputError naming the
    factory unless the output is logits ``[2, num_classes]``. Leaves torch's random state as it was."""
    shape = (2, in_channels, *input_size)
    with torch.random.fork_rng(devices=[]):
        net = call_factory(factory, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
        net.eval()
        try:
            with torch.no_grad():
                out = net(torch.zeros(shape))
        except Exception as error:
            why = _first_line(error)
            raise InputError(
                f"model.factory '{factory}': the network failed on a batch of shape {list(shape)} ({why})"
            ) from None
    got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes) or not out.is_floating_point():
        raise InputError(
            f"model.factory '{factory}': the network's output on a batch of shape {list(shape)} is {got}; it must "
            f"return float logits [batch, num_classes] = [2, {num_classes}]"
        )
