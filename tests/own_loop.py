"""A user's own training loop on scikit-learn's digits, for the PoolScorer tests.

Run as a script it is a resumable job (``python tests/own_loop.py WORKDIR``): it keeps its own
training checkpoint (model, optimizer, RNG, epoch) and a PoolScorer's statistics in WORKDIR, and
can be told to SIGKILL itself at a chosen moment to test that a restart adds no epoch twice.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

EPOCHS = 5
SCORED = (2, 3, 5)
POOL_BATCH = 256


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.images[:, None] / 16.0, dtype=torch.float32)
    return x, torch.tensor(data.target, dtype=torch.int64)


class Tiny(nn.Module):
    """A conv layer, dropout (so training draws random numbers) and a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(6 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.head(self.drop(h.flatten(1)))


def new_training(seed: int) -> tuple[Tiny, torch.optim.Optimizer, DataLoader]:
    torch.manual_seed(seed)
    model = Tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = DataLoader(TensorDataset(*digits()), batch_size=64, shuffle=True)  # shuffles with the global RNG
    return model, optimizer, loader


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> None:
    model.train()
    for x, y in loader:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def pool_logits(model: nn.Module) -> np.ndarray:
    """The model's logits on every digit, computed apart from subsetsearch: the 'afterwards' path."""
    x, _ = digits()
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(x[i : i + POOL_BATCH]) for i in range(0, len(x), POOL_BATCH)]).numpy()


def job(workdir: Path, seed: int, kill: str | None) -> None:
    """Train EPOCHS epochs, scoring SCORED; resume from workdir; SIGKILL at ``kill`` ('after:E', 'during:E')."""
    from subsetsearch.torch import IndexedDataset, PoolScorer

    torch.set_num_threads(1)
    model, optimizer, loader = new_training(seed)
    state_path, first = workdir / "train.pt", 1
    if state_path.exists():
        state = torch.load(state_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        first = state["epoch"] + 1
    moment, _, at = (kill or "none:0").partition(":")
    batches: dict[int, int] = {}  # pool batches seen in each epoch's pass

    def unpack(batch):
        batches[current["epoch"]] = batches.get(current["epoch"], 0) + 1
        if moment == "during" and current["epoch"] == int(at) and batches[current["epoch"]] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return batch[0], batch[-1]

    current = {"epoch": 0}
    pool = IndexedDataset(TensorDataset(*digits()))
    scorer = PoolScorer(pool, SCORED, workdir / "stats.npz", run=f"seed{seed}", batch_size=POOL_BATCH, unpack=unpack)
    for epoch in range(first, EPOCHS + 1):
        current["epoch"] = epoch
        train_epoch(model, optimizer, loader)
        scorer.on_epoch_end(model, epoch)
        if moment == "after" and epoch == int(at):
            os.kill(os.getpid(), signal.SIGKILL)  # the statistics hold this epoch; the training checkpoint does not
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}
        torch.save({**state, "epoch": epoch}, workdir / "train.tmp")
        os.replace(workdir / "train.tmp", state_path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kill", default=None)
    arguments = parser.parse_args()
    job(arguments.workdir, arguments.seed, arguments.kill)
