"""What scoring inside the user's own training loop costs, against keeping checkpoints and scoring after.

    .venv/bin/python benchmarks/own_loop_overhead.py                # Fashion-MNIST, 60k, 8 epochs, 5 scored
    .venv/bin/python benchmarks/own_loop_overhead.py --replot

A plain PyTorch loop (cnn_small width 16, channels-last fp32, SGD, batch 128) trains on all 60,000
Fashion-MNIST training images three times, from the same seed, in one process:

- ``plain``: training only (the baseline);
- ``scorer``: with ``PoolScorer.on_epoch_end`` scoring the 60,000-image pool at the end of
  epochs 4-8 (5 members; the statistics saved after each);
- ``checkpoints``: saving the model at the end of epochs 4-8 instead, then ``afterwards``: each
  checkpoint loaded, its logits on the pool computed and saved as ``.npy``, and the five files
  scored by ``subsetsearch score`` (``score_files``, mutual information, 50%).

It prints the ratios of the three totals to ``plain`` (measured in the same run) and checks that the
scorer's statistics equal the afterwards path's, bit for bit. Last, one member's pass over the pool
given as a Dataset (fetched item by item) against a DataLoader of whole batches (a BatchSampler
over the TensorDataset), median of 3 interleaved rounds. Results:
benchmarks/results/own_loop_overhead.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from subsetsearch.internal.malloc import tune_malloc

tune_malloc()  # before torch is imported, as the trainer does

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset  # noqa: E402

from subsetsearch.pipeline.score import ScoreRequest, score_files  # noqa: E402
from subsetsearch.stats import EnsembleStats  # noqa: E402
from subsetsearch.torch import IndexedDataset, PoolScorer  # noqa: E402
from subsetsearch.train.data import load_fashion_mnist  # noqa: E402
from subsetsearch.train.models import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "own_loop_overhead.json"
POOL_BATCH = 1024


def images() -> tuple[torch.Tensor, torch.Tensor]:
    train, _ = load_fashion_mnist()
    x = torch.tensor(train.x, dtype=torch.float32).div_(255.0).sub_(0.286).div_(0.353)
    return x.contiguous(memory_format=torch.channels_last), torch.tensor(train.y, dtype=torch.int64)


def pool_loader(x: torch.Tensor, y: torch.Tensor) -> DataLoader:
    """Batches fetched by index lists (TensorDataset indexes a whole batch at once), in order."""
    batches = BatchSampler(SequentialSampler(range(len(x))), POOL_BATCH, drop_last=False)
    return DataLoader(IndexedDataset(TensorDataset(x, y)), sampler=batches, batch_size=None)


def train(x, y, epochs: int, at_epoch_end) -> tuple[float, float]:
    """Seconds training and seconds in ``at_epoch_end`` (scoring or saving), for one seeded run."""
    torch.manual_seed(0)
    model = build_model("cnn_small", 1, 10, 16).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    training = hooks = 0.0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        model.train()
        for rows in torch.randperm(len(x)).split(128):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
            optimizer.step()
        middle = time.perf_counter()
        at_epoch_end(model, epoch)
        training, hooks = training + middle - start, hooks + time.perf_counter() - middle
    return training, hooks


def afterwards(folder: Path, x, y, epochs: list[int]) -> tuple[float, EnsembleStats]:
    """Load each checkpoint, save its logits on the pool, score the files: seconds and statistics."""
    start = time.perf_counter()
    model = build_model("cnn_small", 1, 10, 16).to(memory_format=torch.channels_last)
    files = []
    for epoch in epochs:
        model.load_state_dict(torch.load(folder / f"epoch_{epoch}.pt"))
        model.eval()
        with torch.inference_mode():
            logits = torch.cat([model(batch[0]) for batch in pool_loader(x, y)])
        files.append(folder / f"epoch_{epoch}.npy")
        np.save(files[-1], logits.float().numpy())
    request = ScoreRequest(
        members=files,
        function="mutual_information",
        budget="0.5",
        logits=True,
        out=folder / "subset.parquet",
        state=folder / "after.npz",
    )
    score_files(request)
    return time.perf_counter() - start, EnsembleStats.load(folder / "after.npz")


def pool_pass_seconds(x, y, rounds: int = 3) -> dict:
    """One member's pass over the pool, median of ``rounds`` (interleaved): the pool given as a Dataset
    (PoolScorer's DataLoader fetches and collates item by item) or as a DataLoader of whole batches."""
    model = build_model("cnn_small", 1, 10, 16).to(memory_format=torch.channels_last)
    pools = {"dataset_items": lambda: IndexedDataset(TensorDataset(x, y)), "batch_sampler": lambda: pool_loader(x, y)}
    seconds = {name: [] for name in pools}
    for _ in range(rounds):
        for name, make in pools.items():
            start = time.perf_counter()
            PoolScorer(make(), [1], EnsembleStats(len(x), 10), batch_size=POOL_BATCH).on_epoch_end(model, 1)
            seconds[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in seconds.items()}


def measure(epochs: int, scored: list[int]) -> dict:
    x, y = images()
    threads = torch.get_num_threads()
    (ROOT / ".data").mkdir(exist_ok=True)  # ignored by git: a killed run leaves nothing to commit
    with tempfile.TemporaryDirectory(dir=ROOT / ".data") as tmp:
        folder = Path(tmp)
        plain = train(x, y, epochs, lambda model, epoch: None)
        print(f"plain: {sum(plain):.1f} s", flush=True)

        scorer = PoolScorer(pool_loader(x, y), scored, folder / "pool_stats.npz")
        with_scorer = train(x, y, epochs, scorer.on_epoch_end)
        print(f"scorer: {sum(with_scorer):.1f} s ({with_scorer[1]:.1f} s scoring)", flush=True)

        def save(model, epoch):
            if epoch in scored:
                torch.save(model.state_dict(), folder / f"epoch_{epoch}.pt")

        saving = train(x, y, epochs, save)
        after_s, after_stats = afterwards(folder, x, y, scored)
        print(f"checkpoints: {sum(saving):.1f} s, afterwards {after_s:.1f} s", flush=True)
        kept = {
            "scorer_stats_bytes": (folder / "pool_stats.npz").stat().st_size,
            "checkpoint_bytes": sum((folder / f"epoch_{e}.pt").stat().st_size for e in scored),
            "prediction_bytes": sum((folder / f"epoch_{e}.npy").stat().st_size for e in scored),
        }
        scorer_stats = EnsembleStats.load(folder / "pool_stats.npz")
        identical = scorer_stats.equals(after_stats)
    loaders = pool_pass_seconds(x, y)
    plain_s = sum(plain)
    scorer_s = sum(with_scorer)
    checkpoints_s = sum(saving) + after_s
    return {
        "setup": {
            "data": "Fashion-MNIST train, 60,000 images (pool = training set)",
            "model": "cnn_small width 16, channels-last fp32, SGD batch 128",
            "epochs": epochs,
            "scored_epochs": scored,
            "pool_batch": POOL_BATCH,
            "torch_threads": threads,
        },
        "seconds": {
            "plain_train": plain[0],
            "scorer_train": with_scorer[0],
            "scorer_scoring": with_scorer[1],
            "checkpoints_train": saving[0],
            "checkpoints_saving": saving[1],
            "afterwards_predict_save_score": after_s,
        },
        "totals": {"plain": plain_s, "scorer": scorer_s, "checkpoints_then_score": checkpoints_s},
        "ratios": {
            "scorer_vs_plain": scorer_s / plain_s,
            "checkpoints_then_score_vs_plain": checkpoints_s / plain_s,
            "scorer_vs_checkpoints_then_score": scorer_s / checkpoints_s,
            "scoring_share_of_scorer_run": with_scorer[1] / scorer_s,
            "pool_as_dataset_vs_batch_sampler": loaders["dataset_items"] / loaders["batch_sampler"],
        },
        "per_member_scoring_s": with_scorer[1] / len(scored),
        "per_epoch_training_s": plain[0] / epochs,
        "kept_on_disk": kept,
        "pool_pass_s": loaders,
        "scorer_stats_identical_to_afterwards": identical,
        "command": "benchmarks/own_loop_overhead.py",
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["seconds"]
    bars = {
        "training only": [s["plain_train"], 0.0, 0.0],
        "PoolScorer\nin the loop": [s["scorer_train"], s["scorer_scoring"], 0.0],
        "save checkpoints,\nscore afterwards": [
            s["checkpoints_train"],
            s["checkpoints_saving"],
            s["afterwards_predict_save_score"],
        ],
    }
    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(bars)
    left = np.zeros(len(names))
    parts = ["training", "at epoch end (score / save)", "afterwards: predict, save, score"]
    for part, (label, colour) in enumerate(zip(parts, ["C0", "C1", "C3"], strict=True)):
        widths = np.array([bars[name][part] for name in names])
        ax.barh(names, widths, left=left, label=label, color=colour)
        left += widths
    for i, total in enumerate(left):
        ratio = total / left[0]
        ax.text(total, i, f" {total:.0f} s ({ratio:.2f}×)", va="center")
    ax.set_xlim(0, left.max() * 1.3)
    ax.set_xlabel("seconds (one process, same seed)")
    setup = results["setup"]
    ax.set_title(
        f"Fashion-MNIST 60k, {setup['epochs']} epochs, {len(setup['scored_epochs'])} members scored on 60k", fontsize=10
    )
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.45, -0.2), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--replot", action="store_true", help="Redraw the PNG from the saved JSON.")
    arguments = parser.parse_args()
    if arguments.replot:
        results = json.loads(RESULTS.read_text())
    else:
        scored = list(range(max(1, arguments.epochs - 4), arguments.epochs + 1))
        results = measure(arguments.epochs, scored)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, RESULTS.with_suffix(".png"))
    for name, value in results["ratios"].items():
        print(f"{name}: {value:.3f}")
    print(f"statistics identical: {results['scorer_stats_identical_to_afterwards']}")


if __name__ == "__main__":
    main()
