"""Zero-cost members: what recording the training batches' outputs costs, and how its scores differ.

    .venv/bin/python benchmarks/training_pass_members.py            # 3 rounds; resumes, one round at a time
    .venv/bin/python benchmarks/training_pass_members.py --replot

A plain PyTorch loop (cnn_small width 16, channels-last fp32, SGD, batch 128) trains on all 60,000
Fashion-MNIST training images for 8 epochs, from the same seed, three ways per round, interleaved:

- ``plain``: training only (the baseline of the round);
- ``train_pass``: ``PoolScorer(members="train", labels=...)``: every training batch's logits of
  epochs 4-8 handed to ``on_train_batch`` (5 members, no inference pass), saved after each epoch;
- ``eval_pass``: ``PoolScorer(labels=...)``: the model predicts the 60,000-image pool at the end
  of epochs 4-8 (5 members, one inference pass each).

Each round trains the three the same way (same seed, same batches), so a run's ratio to ``plain``
of its own round is paired; the rounds give the mean ratio, its sample sd and a 95% t-interval.
That whole-run ratio carries this shared machine's noise (two trainings of the same work differ by
up to ~10% here), so each run also times what it spends inside the scorer's calls, divided by the
round's ``plain`` seconds: the scorer's own cost. Goal (issue 16): ``train_pass`` within 5% of
``plain``, read on that share.

Then, from the last round's two statistics, how the training-pass scores differ from the
eval-pass ones: the Spearman rank correlation of each label-based function over the 60,000 rows,
and the share of the top 50% the two choose alike (intersection / 30,000).

Results: benchmarks/results/training_pass_members.{json,png}, written after every round.
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
from own_loop_overhead import images, pool_loader  # noqa: E402  (the same data and pool loader)

from subsetsearch.dynamics import TrainingDynamics, dynamics_path  # noqa: E402
from subsetsearch.torch import PoolScorer  # noqa: E402
from subsetsearch.train.models import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "training_pass_members.json"
EPOCHS = 8
SCORED = list(range(4, EPOCHS + 1))
WINDOW = 3
WAYS = ("plain", "train_pass", "eval_pass")
FUNCTIONS = ("el2n", "forgetting", "dyn_unc", "variability", "hard_to_learn")


def train(x, y, scorer: PoolScorer | None, way: str) -> tuple[float, float]:
    """Seconds of the whole run (training, recording, scoring, saving), and of those the seconds
    spent inside the scorer's calls."""
    torch.manual_seed(0)
    model = build_model("cnn_small", 1, 10, 16).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    inside = 0.0
    start = time.perf_counter()
    for epoch in range(1, EPOCHS + 1):
        model.train()
        for rows in torch.randperm(len(x)).split(128):
            optimizer.zero_grad()
            logits = model(x[rows])
            torch.nn.functional.cross_entropy(logits, y[rows]).backward()
            optimizer.step()
            if way == "train_pass":
                begin = time.perf_counter()
                scorer.on_train_batch(logits, rows, epoch)
                inside += time.perf_counter() - begin
        begin = time.perf_counter()
        if way == "train_pass":
            scorer.on_epoch_end(None, epoch)
        elif way == "eval_pass":
            scorer.on_epoch_end(model, epoch)
        inside += time.perf_counter() - begin
    return time.perf_counter() - start, inside


def one_round(x, y, folder: Path) -> tuple[dict, dict]:
    seconds, inside = {}, {}
    labels = y.numpy()
    for way in WAYS:
        scorer = None
        if way != "plain":
            members = "train" if way == "train_pass" else "eval"
            scorer = PoolScorer(
                pool_loader(x, y), SCORED, folder / f"{way}.npz", labels=labels, window=WINDOW, members=members
            )
        seconds[way], inside[way] = train(x, y, scorer, way)
        print(f"  {way}: {seconds[way]:.1f} s ({inside[way]:.2f} s in the scorer)", flush=True)
    dynamics = {way: TrainingDynamics.load(dynamics_path(folder / f"{way}.npz")) for way in WAYS[1:]}
    return {"seconds": seconds, "in_scorer_seconds": inside}, dynamics


def compare(train_pass: TrainingDynamics, eval_pass: TrainingDynamics) -> dict:
    from scipy.stats import spearmanr

    out = {}
    half = train_pass.num_samples // 2
    for function in FUNCTIONS:
        a, b = train_pass.scores(function), eval_pass.scores(function)
        order_a = np.argsort(-a, kind="stable")[:half]
        order_b = np.argsort(-b, kind="stable")[:half]
        out[function] = {
            "spearman": float(spearmanr(a, b).statistic),
            "top_half_shared": len(np.intersect1d(order_a, order_b)) / half,
            "mean_train_pass": float(a.mean()),
            "mean_eval_pass": float(b.mean()),
        }
    return out


def summarise(results: dict) -> None:
    from summary_stats import mean_sd, paired  # benchmarks/summary_stats.py

    rounds = results["rounds"]
    summary = {}
    for way in WAYS[1:]:
        ratios = {i: r["seconds"][way] / r["seconds"]["plain"] for i, r in enumerate(rounds)}
        excess = paired(ratios, dict.fromkeys(ratios, 1.0))  # ratio - 1, paired by round
        summary[f"{way}_vs_plain"] = {
            "ratios": list(ratios.values()),
            "mean": 1.0 + excess["mean"],
            "sd": excess["sd"],
            "n": excess["n"],
            "ci95": None if excess["ci95"] is None else [1.0 + v for v in excess["ci95"]],
        }
        shares = [r["in_scorer_seconds"][way] / r["seconds"]["plain"] for r in rounds]
        summary[f"{way}_in_scorer_vs_plain"] = {"ratios": shares, **mean_sd(shares)}
    # the goal is read on the time inside the scorer (its own cost, little touched by the machine's
    # noise); the whole-run ratio beside it carries the noise of two training runs
    share = summary["train_pass_in_scorer_vs_plain"]["mean"]
    summary["goal_train_pass_within_5pct"] = "met" if share <= 0.05 else "not met"
    results["summary"] = summary


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = ["training-pass members", "eval-pass members"]
    summary = results["summary"]
    for i, way in enumerate(WAYS[1:]):
        item = summary[f"{way}_vs_plain"]
        left.scatter([i] * item["n"], item["ratios"], color="C0", zorder=3)
        left.bar(i, item["mean"], color="C1", alpha=0.5)
        left.text(i, item["mean"], f"{item['mean']:.3f}×", ha="center", va="bottom")
    left.axhline(1.0, color="k", lw=0.8)
    left.axhline(1.05, color="C3", lw=0.8, ls="--", label="goal: 1.05×")
    left.set_xticks([0, 1], names)
    left.set_ylabel("run time ÷ training only (same round)")
    left.set_ylim(0.9, max(1.5, max(summary["eval_pass_vs_plain"]["ratios"]) * 1.05))
    left.legend(fontsize=8)
    left.set_title(f"{len(SCORED)} members over 60k images, n={summary['train_pass_vs_plain']['n']} rounds", fontsize=9)
    differences = results["score_differences"]
    functions = list(differences)
    right.bar(np.arange(len(functions)) - 0.2, [differences[f]["spearman"] for f in functions], 0.4, label="Spearman ρ")
    right.bar(
        np.arange(len(functions)) + 0.2,
        [differences[f]["top_half_shared"] for f in functions],
        0.4,
        label="top 50% shared",
    )
    right.set_xticks(range(len(functions)), functions, fontsize=8)
    right.set_ylim(0, 1)
    right.set_title("training-pass against eval-pass scores", fontsize=9)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replot", action="store_true")
    arguments = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rounds": []}
    if not arguments.replot:
        x, y = images()
        results["setup"] = {
            "data": "Fashion-MNIST train, 60,000 images (pool = training set)",
            "model": "cnn_small width 16, channels-last fp32, SGD batch 128",
            "epochs": EPOCHS,
            "scored_epochs": SCORED,
            "window": WINDOW,
            "torch_threads": torch.get_num_threads(),
            "command": "benchmarks/training_pass_members.py",
        }
        while len(results["rounds"]) < arguments.rounds:
            print(f"round {len(results['rounds']) + 1} of {arguments.rounds}", flush=True)
            (ROOT / ".data").mkdir(exist_ok=True)  # ignored by git: a killed round leaves nothing to commit
            with tempfile.TemporaryDirectory(dir=ROOT / ".data") as tmp:
                measured, dynamics = one_round(x, y, Path(tmp))
                results["rounds"].append(measured)
                results["score_differences"] = compare(dynamics["train_pass"], dynamics["eval_pass"])
            summarise(results)
            RESULTS.parent.mkdir(exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")  # after every round: resumable
    plot(results, RESULTS.with_suffix(".png"))
    for name, item in results["summary"].items():
        print(name, item if isinstance(item, str) else f"{item['mean']:.4f} ± {item['sd'] or 0:.4f} (n={item['n']})")
    for function, item in results["score_differences"].items():
        print(f"{function}: Spearman {item['spearman']:.3f}, top half shared {item['top_half_shared']:.3f}")


if __name__ == "__main__":
    main()
