"""What the Hugging Face Trainer's callback (subsetsearch.hf) costs, against the same training without it.

    .venv/bin/python benchmarks/hf_overhead.py            # 3 seeds, about 6 minutes on 2 cores
    .venv/bin/python benchmarks/hf_overhead.py --replot

A small ViT built from its config (no download: 28×28 inputs, 4×4 patches, width 64, 2 layers,
4 heads) trains with the ``transformers.Trainer`` on 20,000 Fashion-MNIST training images for 4
epochs (batch 128, AdamW 1e-3, CPU, fp32), three times per seed, in one process and in an order
that rotates with the seed:

- ``plain``: the Trainer alone, on items without a pool index (the baseline);
- ``eval``: with ``PoolScoringCallback`` scoring the 20,000-image pool at the end of epochs 2-4
  (3 members, label statistics kept, saved after each);
- ``train``: with ``PoolScoringCallback(members="train")``: epochs 2-4's members from the
  training batches' own logits (no pass over the pool).

Printed and saved: each mode's training seconds over ``plain``'s in the same seed (paired, mean
with the sample sd and a 95% t-interval), and whether each run's final weights equal ``plain``'s
bit for bit. Results: benchmarks/results/hf_overhead.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from subsetsearch.internal.malloc import tune_malloc

tune_malloc()  # before torch is imported, as the trainer does

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary_stats import mean_sd, paired  # noqa: E402

from subsetsearch.hf import PoolScoringCallback  # noqa: E402
from subsetsearch.internal.atomic import atomic_path  # noqa: E402
from subsetsearch.train.data import load_fashion_mnist  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "hf_overhead.json"
SEEDS = (0, 1, 2)
POOL = 20000
EPOCHS = 4
CHOSEN = (2, 3, 4)
MODES = ("plain", "eval", "train")


class Items(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.x[i], "labels": self.y[i], "pool_index": i}


class PlainItems(Items):
    """The training set as a user has it without the callback: no pool index."""

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def data() -> tuple[torch.Tensor, torch.Tensor]:
    train, _ = load_fashion_mnist()
    rows = np.random.default_rng(0).permutation(len(train.y))[:POOL]
    x = torch.tensor(train.x[rows], dtype=torch.float32).div_(255.0).sub_(0.286).div_(0.353)
    return x, torch.tensor(train.y[rows], dtype=torch.int64)


def vit(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.ViTConfig(
        image_size=28,
        patch_size=4,
        num_channels=1,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=10,
    )
    return transformers.ViTForImageClassification(config)


def train(mode: str, seed: int, x: torch.Tensor, y: torch.Tensor, folder: Path) -> tuple[float, dict]:
    items = Items(x, y) if mode != "plain" else PlainItems(x, y)
    callbacks = []
    if mode != "plain":
        stats = folder / f"{mode}_{seed}.npz"
        callbacks.append(PoolScoringCallback(items, CHOSEN, stats, labels=y.numpy(), members=mode, batch_size=1024))
    args = transformers.TrainingArguments(
        output_dir=str(folder / "out"),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=128,
        learning_rate=1e-3,
        seed=seed,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    model = vit(seed)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=items, callbacks=callbacks)
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started, {k: v.clone() for k, v in model.state_dict().items()}


def summarise(runs: dict) -> dict:
    seconds = {mode: {int(seed): run[mode]["seconds"] for seed, run in runs.items()} for mode in MODES}
    out: dict = {}
    for mode in ("eval", "train"):
        ratio = {s: seconds[mode][s] / seconds["plain"][s] for s in seconds[mode] if s in seconds["plain"]}
        out[mode] = {
            **mean_sd(list(ratio.values())),
            "by_seed": ratio,
            "vs_1": paired(ratio, dict.fromkeys(ratio, 1.0)),
            "same_weights_as_plain": all(runs[str(s)][mode]["same_weights"] for s in ratio),
        }
    out["plain_seconds"] = mean_sd(list(seconds["plain"].values()))
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for k, mode in enumerate(("eval", "train")):
        entry = results["summary"][mode]
        seeds = sorted(entry["by_seed"], key=int)
        ax.scatter([k] * len(seeds), [entry["by_seed"][s] for s in seeds], color="tab:blue", zorder=3)
        ax.bar(k, entry["mean"], color="tab:blue", alpha=0.35)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks([0, 1], [f"eval pass\n(members at epochs {CHOSEN[0]}-{CHOSEN[-1]})", "training-pass members"])
    ax.set_ylabel("training seconds / without the callback")
    ax.set_title(f"Hugging Face Trainer, ViT on {POOL:,} images, {EPOCHS} epochs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replot", action="store_true")
    replot = parser.parse_args().replot
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}
    if not replot:
        torch.set_num_threads(2)
        x, y = data()
        with tempfile.TemporaryDirectory() as work:
            for seed in SEEDS:
                if str(seed) in results["runs"]:
                    continue
                order = MODES[seed % 3 :] + MODES[: seed % 3]  # who goes first rotates with the seed
                runs, weights = {}, {}
                for mode in order:
                    seconds, weights[mode] = train(mode, seed, x, y, Path(work))
                    runs[mode] = {"seconds": seconds}
                    print(f"seed {seed} {mode}: {seconds:.1f} s", flush=True)
                for mode in MODES:
                    same = all(torch.equal(weights[mode][k], v) for k, v in weights["plain"].items())
                    runs[mode]["same_weights"] = same
                results["runs"][str(seed)] = runs
                results["summary"] = summarise(results["runs"])
                with atomic_path(RESULTS) as tmp:
                    tmp.write_text(json.dumps(results, indent=1) + "\n")
    results["summary"] = summarise(results["runs"])
    plot(results, RESULTS.with_suffix(".png"))
    print(json.dumps(results["summary"], indent=1))


if __name__ == "__main__":
    main()
