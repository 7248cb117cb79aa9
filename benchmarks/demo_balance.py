"""The demo's subset with and without ``search.balance: class``: class shares and accuracy.

    .venv/bin/python benchmarks/demo_balance.py          # two demo runs (about 4 min each on 2 cores); resumes
    .venv/bin/python benchmarks/demo_balance.py --replot # the PNG from the JSON

Runs ``configs/demo.yaml`` as it is and with ``search.balance: class`` added (nothing else
changed), each in its own run directory under ``benchmarks/.data/demo_balance/``, and records per
class the share of the pool and of each final subset, and each run's test accuracies (subset
models, the random and full baselines), from the run directories' own files. One seed: the
accuracies show what one run gives, not a comparison with an interval (see
``benchmarks/selection_options.py`` for that). Training differs in its last bits between CPUs,
so the accuracies (and which samples are chosen) move by a few tenths from machine to machine.
Results in ``benchmarks/results/demo_balance.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "demo_balance"
WORK = ROOT / ".data" / "demo_balance"
VARIANTS = {"plain": {}, "balance": {"balance": "class"}}


def run(name: str, search: dict) -> dict:
    from subsetsearch.pipeline.config import parse_config, read_yaml
    from subsetsearch.pipeline.progress import Reporter
    from subsetsearch.pipeline.run import run_config
    from subsetsearch.rundir import DatasetRecord, RunLayout, Subset

    data = read_yaml(ROOT.parent / "configs" / "demo.yaml")
    data["search"] = {**data["search"], **search}
    folder = WORK / name
    with Reporter() as reporter:
        run_config(parse_config(data, "demo config"), folder, reporter)
    layout = RunLayout(folder)
    dataset = DatasetRecord.load(layout.dataset)
    subset = Subset.read(layout.subset)
    labels = dataset.pool_labels
    classes = len(dataset.class_names)
    metrics = json.loads(layout.metrics.read_text())
    return {
        "search": search,
        "class_names": dataset.class_names,
        "pool_share": (np.bincount(labels, minlength=classes) / len(labels)).tolist(),
        "subset_share": (np.bincount(labels[subset.index], minlength=classes) / len(subset.index)).tolist(),
        "accuracy": {
            variant: {
                "models": v["test_accuracy"],
                "mean": v["test_accuracy_mean"],
                "ensemble": v.get("ensemble_test_accuracy"),
            }
            for variant, v in metrics["variants"].items()
        },
        "search_seconds": metrics["search_seconds"],
    }


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    names = runs["plain"]["class_names"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.bar(x - 0.2, [100 * s for s in runs["plain"]["subset_share"]], 0.4, label="highest first (the demo)")
    ax.bar(x + 0.2, [100 * s for s in runs["balance"]["subset_share"]], 0.4, label="balance: class")
    ax.plot(x, [100 * s for s in runs["plain"]["pool_share"]], "k_", markersize=22, label="the pool")
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_ylabel("% of the 50% subset")
    ax.legend(fontsize=8)
    accuracy = {k: 100 * v["accuracy"]["build_up"]["mean"] for k, v in runs.items()}
    ax.set_title(
        f"demo (20,000 Fashion-MNIST images, one seed): subset models {accuracy['plain']:.2f}% highest first, "
        f"{accuracy['balance']:.2f}% balanced",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replot", action="store_true")
    args = parser.parse_args()
    if not args.replot:
        from subsetsearch.internal.malloc import tune_malloc

        tune_malloc()
        report = {
            "command": "python benchmarks/demo_balance.py",
            "machine": f"{platform.processor() or platform.machine()}, {sys.platform}",
            "runs": {name: run(name, search) for name, search in VARIANTS.items()},
        }
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    report = json.loads(OUT.with_suffix(".json").read_text())
    plot(report, OUT.with_suffix(".png"))
    for name, r in report["runs"].items():
        shares = ", ".join(f"{n} {100 * s:.1f}%" for n, s in zip(r["class_names"], r["subset_share"], strict=True))
        print(f"{name}: build_up {100 * r['accuracy']['build_up']['mean']:.2f}%; {shares}")


if __name__ == "__main__":
    main()
