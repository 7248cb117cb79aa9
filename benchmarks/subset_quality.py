"""Does an actively chosen subset of Fashion-MNIST train better than a random one of the same size?

    .venv/bin/python benchmarks/subset_quality.py              # 60k pool, 10k test, 3 seeds (~45 min, 2 cores)
    .venv/bin/python benchmarks/subset_quality.py --quick      # 6k pool, 1 seed: a smoke run
    .venv/bin/python benchmarks/subset_quality.py --replot     # redraw the PNG from the JSON

For every seed, two `subsetsearch run` searches on the whole Fashion-MNIST training set (60,000
images; the 10,000 test images judge): build_up with mutual_information and with variation_ratios,
random 12.5% start, then acquisition to 25% and 50%, each step with a fresh checkpoint ensemble
(epochs 6, 8, 10, 12 of two runs of cnn_small: 8 members). A subset model is trained on the 25% and on the 50%
subset, and on random subsets of the same sizes and on the full set, with the same schedule.

Records (benchmarks/results/subset_quality.json, a list): method, fraction, seed, test_accuracy,
train_seconds; the build_up records also carry search_seconds (ensemble training + scoring of the
whole search). Run directories are kept in benchmarks/.data/subset_quality/, so an interrupted
benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary_stats import difference, mean_sd, paired, text

from subsetsearch.pipeline.config import parse_config
from subsetsearch.pipeline.progress import Reporter
from subsetsearch.pipeline.run import search_for
from subsetsearch.pipeline.study import StudyWork
from subsetsearch.rundir import RunLayout

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "subset_quality.json"
FUNCTIONS = ("mutual_information", "variation_ratios")


def search_config(seed: int, function: str, quick: bool) -> dict:
    return {
        "name": f"{function}-seed{seed}",
        "seed": seed,
        "data": {"dataset": "fashion_mnist", **({"limit": 6000, "test_limit": 2000} if quick else {})},
        "model": {"name": "cnn_small", "width": 16},
        "train": {"epochs": 4 if quick else 12, "batch_size": 128, "augment": {"crop_padding": 0, "flip": True}},
        "ensemble": {"kind": "combined", "runs": 2, "start": 2 if quick else 6, "stop": 4 if quick else 12, "step": 2},
        "search": {"scheme": "build_up", "function": function, "budgets": [0.125, 0.25, 0.5]},
        "subset_model": {"models": 1, "steps": "all"},
        # the baselines depend on the seed only: train them once per seed, beside the first function
        "compare": ["random", "full"] if function == FUNCTIONS[0] else [],
    }


def records_of(metrics: dict, seed: int, function: str, pool: int) -> list[dict]:
    out = []
    for name, variant in metrics["variants"].items():
        base = name.split("@")[0]
        method = f"build_up/{function}" if base == "build_up" else base
        record = {
            "method": method,
            "fraction": round(variant["subset_size"] / pool, 4),
            "seed": seed,
            "test_accuracy": variant["test_accuracy"][0],
            "train_seconds": variant["train_seconds"][0],
        }
        if base == "build_up":
            record["search_seconds"] = metrics["search_seconds"]
        out.append(record)
    return out


def table(records: list[dict]) -> str:
    """Means ± sample sd (n seeds) per method and size, then each function's gain over random and
    its gap to the full set, paired by seed, with 95% intervals."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in records:
        groups.setdefault((r["method"], r["fraction"]), []).append(r)
    lines = [f"{'method':<30}{'fraction':>9}{'test accuracy %':>24}{'train s':>9}{'search s':>10}"]
    for (method, fraction), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        search = [r["search_seconds"] for r in rs if "search_seconds" in r]
        lines.append(
            f"{method:<30}{fraction:>9.3f}{text(mean_sd([r['test_accuracy'] for r in rs]), 100):>24}"
            f"{np.mean([r['train_seconds'] for r in rs]):>9.1f}{(np.mean(search) if search else float('nan')):>10.1f}"
        )
    lines.append("paired by seed, points (mean [95% interval], n):")
    full = {r["seed"]: r["test_accuracy"] for r in records if r["method"] == "full"}
    for (method, fraction), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if not method.startswith("build_up/"):
            continue
        mine = {r["seed"]: r["test_accuracy"] for r in rs}
        for name, other in (("random", groups.get(("random", fraction), [])), ("full", None)):
            base = full if other is None else {r["seed"]: r["test_accuracy"] for r in other}
            d = paired(mine, base)
            if not d["n"]:
                continue
            lines.append(f"  {method} - {name} at {fraction:.3f}: {difference(d)} (n={d['n']})")
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    methods = sorted({r["method"] for r in records} - {"full"})
    for offset, method in enumerate(methods):
        fractions = sorted({r["fraction"] for r in records if r["method"] == method})
        means, stds = [], []
        for f in fractions:
            acc = [100 * r["test_accuracy"] for r in records if r["method"] == method and r["fraction"] == f]
            means.append(np.mean(acc))
            stds.append(np.std(acc, ddof=1) if len(acc) > 1 else 0.0)
        x = np.array(fractions) * 100 + (offset - 1) * 0.6
        ax.errorbar(x, means, yerr=stds, marker="o", capsize=3, label=method)
    full = [100 * r["test_accuracy"] for r in records if r["method"] == "full"]
    if full:
        sd = np.std(full, ddof=1) if len(full) > 1 else 0.0
        ax.axhspan(np.mean(full) - sd, np.mean(full) + sd, color="0.85")
        ax.axhline(np.mean(full), color="k", lw=1, label="full (100%)")
    ax.set_xlabel("subset size (% of the 60k pool)")
    ax.set_ylabel("test accuracy (%), mean ± sample sd over seeds")
    ax.set_title("Fashion-MNIST, cnn_small: build_up subsets vs random")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="6k pool, 4 epochs, 1 seed: a smoke run")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON of an earlier run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.replot:
        records = json.loads(args.out.read_text())
        plot(records, args.out.with_suffix(".png"))
        print(table(records))
        return
    seeds = range(1 if args.quick else args.seeds)
    work = ROOT / ".data" / ("subset_quality_quick" if args.quick else "subset_quality")
    records: list[dict] = []
    started = time.perf_counter()
    for seed in seeds:
        for function in FUNCTIONS:
            config = parse_config(search_config(seed, function, args.quick), "benchmark")
            shared = StudyWork()  # the first function's run: later ones take its step-1 ensemble and scores
            shared.add(RunLayout(work / f"{FUNCTIONS[0]}-seed{seed}"))
            with Reporter() as reporter:
                result = search_for(config, work / config.name, reporter, shared=shared).run()
            metrics = json.loads((result.run_dir / "metrics.json").read_text())
            records += records_of(metrics, seed, function, result.pool_size)
            print(f"[{time.perf_counter() - started:.0f} s] seed {seed} {function} done", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=1) + "\n")
    meta = args.out.with_name(args.out.stem + "_run.json")
    meta.write_text(
        json.dumps(
            {
                "command": "python benchmarks/subset_quality.py" + (" --quick" if args.quick else ""),
                "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
                "wall_seconds": time.perf_counter() - started,
            },
            indent=1,
        )
        + "\n"
    )
    plot(records, args.out.with_suffix(".png"))
    print(table(records))


if __name__ == "__main__":
    main()
