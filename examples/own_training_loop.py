"""Score the pool inside your own PyTorch training loop (scikit-learn's digits; a minute on a CPU).

1. Split the 1,797 digits into a labeled pool (70%) and a test set (30%).
2. Train two runs (seeds) of a small CNN on the pool with a plain PyTorch loop. A
   ``PoolScorer`` scores the pool at the end of epochs 16-20 of each run: 10 members, saved
   after each one in RUN_DIR/pool_stats.npz, and not one checkpoint kept.
3. ``subsetsearch score --stats RUN_DIR/pool_stats.npz``: mutual information, 40% budget.
4. Train on the chosen 40%, on a random 40% and on the whole pool (3 seeds each); print the test
   accuracies.

    .venv/bin/python examples/own_training_loop.py runs/own-loop

Run it again and the scorer skips the members the statistics already hold.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from subsetsearch.torch import IndexedDataset, PoolScorer

EPOCHS, SCORED, RUNS, TRIALS = 20, range(16, 21), 2, 3


def network() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 10)
    )


def train_one_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer) -> None:
    model.train()
    for rows in torch.randperm(len(x)).split(32):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
        optimizer.step()


def fit(x: torch.Tensor, y: torch.Tensor, seed: int, scorer: PoolScorer | None = None) -> nn.Module:
    torch.manual_seed(seed)
    model = network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(1, EPOCHS + 1):
        train_one_epoch(model, x, y, optimizer)
        if scorer is not None:
            scorer.on_epoch_end(model, epoch)  # a member at the end of epochs 16-20; nothing otherwise
    return model


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        return float((model(x).argmax(1) == y).float().mean())


def main(run_dir: Path) -> dict[str, float]:
    run_dir.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    x = torch.tensor(digits.images[:, None] / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    pool_rows, test_rows = train_test_split(np.arange(len(x)), test_size=0.3, random_state=0, stratify=digits.target)
    pool_x, pool_y, test_x, test_y = x[pool_rows], y[pool_rows], x[test_rows], y[test_rows]

    pool = IndexedDataset(TensorDataset(pool_x, pool_y))  # items (x, y, pool index)
    for seed in range(RUNS):
        scorer = PoolScorer(pool, epochs=SCORED, stats=run_dir / "pool_stats.npz", run=f"seed{seed}")
        fit(pool_x, pool_y, seed, scorer)

    subset_file = run_dir / "subset.parquet"
    command = [sys.executable, "-m", "subsetsearch.cli", "score", "--stats", str(run_dir / "pool_stats.npz")]
    command += ["--function", "mutual_information", "--budget", "0.4", "--out", str(subset_file)]
    subprocess.run(command, check=True)
    chosen = pq.read_table(subset_file).column("index").to_numpy()

    results = {}
    rng = np.random.default_rng(0)
    for name in ("subset", "random", "full"):
        scores = []
        for trial in range(TRIALS):
            rows = {"subset": chosen, "random": rng.permutation(len(pool_x))[: chosen.size]}.get(name)
            rows = torch.arange(len(pool_x)) if rows is None else torch.tensor(rows)
            scores.append(accuracy(fit(pool_x[rows], pool_y[rows], seed=100 + trial), test_x, test_y))
        results[name] = float(np.mean(scores))
        print(f"{name:>6} ({len(rows)} samples): test accuracy {100 * results[name]:.2f}%")
    return results


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/own-loop"))
