"""What bf16 does to a subset search on the CPU, against fp32: time and subset quality.

    .venv/bin/python benchmarks/precision.py             # configs/demo.yaml, seeds 0-2, fp32 and bf16 (~1 h, 2 cores)
    .venv/bin/python benchmarks/precision.py --quick     # 3,000-image pool, 4 epochs, 2 seeds: a smoke run
    .venv/bin/python benchmarks/precision.py --replot    # redraw the PNG and reprint the table from the JSON

Every run is ``configs/demo.yaml`` (build-up by mutual information on 20,000 Fashion-MNIST images,
12.5% -> 25% -> 50%, 8 checkpoint members, two subset models per variant, random and full
baselines) with ``seed`` and ``train.precision`` forced, so both precisions train and score with
the same seeds. The pairs run back to back (fp32 then bf16 of one seed), so the machine's load
drifts less between the two sides of a comparison. Comparisons are paired by seed: bf16 minus
fp32 for accuracies, bf16 / fp32 for seconds, with a 95% t-interval.

Where the difference comes from: for each bf16 run, step 1's bf16-trained checkpoints are scored
again in fp32, and the rows the two scorings choose are compared (``rescored_in_fp32``).

Results: ``benchmarks/results/precision.{json,png}``, rewritten after every finished run; run
directories in ``benchmarks/.data/precision/`` (an interrupted benchmark resumes from them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary_stats import mean_sd, paired, text

from subsetsearch.internal.atomic import atomic_path

ROOT = Path(__file__).resolve().parent
DEMO = ROOT.parent / "configs" / "demo.yaml"
RESULTS = ROOT / "results" / "precision.json"
PRECISIONS = ("fp32", "bf16")
VARIANTS = ("build_up", "random", "full")


def run_config_dict(seed: int, precision: str, quick: bool) -> dict:
    config = yaml.safe_load(DEMO.read_text())
    config["seed"] = seed
    config["name"] = f"{precision}-seed{seed}"
    config["train"] = {**config["train"], "precision": precision}
    if quick:
        config["data"] = {**config["data"], "limit": 3000, "test_limit": 2000}
        config["train"]["epochs"] = 4
        config["ensemble"] = {**config["ensemble"], "start": 2, "stop": 4}
    return config


def machine() -> dict:
    import torch

    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "")
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
    }


def record_of(run_dir: Path, seed: int, precision: str, wall: float) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    steps = metrics["steps"]
    import pyarrow.parquet as pq

    subset = pq.read_table(run_dir / "subset.parquet")["index"].to_numpy()
    return {
        "seed": seed,
        "precision": precision,
        "search_seconds": metrics["search_seconds"],
        "ensemble_train_seconds": sum(s.get("train_seconds", 0.0) for s in steps),
        "score_seconds": sum(s.get("score_seconds", 0.0) for s in steps),
        "variants": {
            name: {
                "test_accuracy": v["test_accuracy"],
                "train_seconds": v["train_seconds"],
                "subset_size": v["subset_size"],
            }
            for name, v in metrics["variants"].items()
        },
        "subset": sorted(int(i) for i in subset),
        "wall_seconds_this_session": wall,
    }


def summarise(runs: list[dict]) -> dict:
    by = {(r["precision"], r["seed"]): r for r in runs}
    out: dict = {"per_precision": {}, "bf16_minus_fp32": {}, "bf16_over_fp32": {}, "subset_overlap": {}}
    for p in PRECISIONS:
        rs = [r for r in runs if r["precision"] == p]
        entry = {
            "search_seconds": mean_sd([r["search_seconds"] for r in rs]),
            "subset_model_train_seconds": mean_sd([np.mean(r["variants"]["build_up"]["train_seconds"]) for r in rs]),
        }
        for v in VARIANTS:
            entry[f"{v}_accuracy"] = mean_sd([np.mean(r["variants"][v]["test_accuracy"]) for r in rs])
        out["per_precision"][p] = entry
    seeds = sorted({s for (p, s) in by if p == "fp32"} & {s for (p, s) in by if p == "bf16"})

    def per_seed(p: str, fn) -> dict[int, float]:
        return {s: fn(by[(p, s)]) for s in seeds}

    for v in VARIANTS:

        def accuracy(r: dict, v: str = v) -> float:
            return float(np.mean(r["variants"][v]["test_accuracy"]))

        out["bf16_minus_fp32"][f"{v}_accuracy"] = paired(per_seed("bf16", accuracy), per_seed("fp32", accuracy))
    for key in ("search_seconds", "ensemble_train_seconds", "score_seconds"):
        ratio = {s: by[("bf16", s)][key] / by[("fp32", s)][key] for s in seeds}
        out["bf16_over_fp32"][key] = paired(ratio, dict.fromkeys(seeds, 0.0))
    for s in seeds:
        a, b = set(by[("fp32", s)]["subset"]), set(by[("bf16", s)]["subset"])
        out["subset_overlap"][str(s)] = len(a & b) / len(a | b)
    return out


def rescored_in_fp32(run_dir: Path) -> dict:
    """Step 1 of a bf16 run: its bf16-trained checkpoints score the unselected rows again, in bf16
    (as the run did) and in fp32; how many chosen rows the two scorings share (intersection /
    union), and whether the bf16 rescoring chose what the run chose."""
    from subsetsearch import acquire, select
    from subsetsearch.pipeline.config import parse_config
    from subsetsearch.pipeline.search import Search
    from subsetsearch.rundir import Subset
    from subsetsearch.train import trainer

    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    raw.pop("subsetsearch_version", None)
    config = parse_config(raw, str(run_dir / "config.yaml"))
    search = Search(config, run_dir).task
    search.prepare()
    start, step = (
        Subset.read(run_dir / "iter_00" / "subset.parquet"),
        Subset.read(run_dir / "iter_01" / "subset.parquet"),
    )
    selected = np.zeros(search.info.pool_size, bool)
    selected[start.index] = True
    candidates = np.flatnonzero(~selected)
    k = step.size - start.size
    fp32 = trainer.Network(
        config.model, config.train.model_copy(update={"precision": "fp32"}), 1, search.splits.num_classes, search.device
    )
    chosen = {}
    for name, network in (("bf16", search.acq_net), ("fp32", fp32)):
        probs = []
        for member in search.member_files(1):
            net = network.build(0)
            trainer.load_weights(net, member.path)
            probs.append(trainer.predict(network, net, search.pool, candidates))
        scores = np.full(search.info.pool_size, np.nan)
        scores[candidates] = acquire(np.stack(probs), config.search.function)
        chosen[name] = set(select(scores, k, exclude=selected, seed=0).tolist())
    in_run = set(step.index[step.iteration == 1].tolist())
    return {
        "chosen_shared": len(chosen["bf16"] & chosen["fp32"]) / len(chosen["bf16"] | chosen["fp32"]),
        "bf16_rescoring_matches_the_run": chosen["bf16"] == in_run,
    }


def table(result: dict) -> str:
    summary = result["summary"]
    lines = [f"{'':<34}{'fp32':>26}{'bf16':>26}"]
    rows = [("search seconds (train + score)", "search_seconds", 1.0, 1)]
    rows += [("subset model train seconds", "subset_model_train_seconds", 1.0, 1)]
    rows += [(f"{v} test accuracy %", f"{v}_accuracy", 100.0, 2) for v in VARIANTS]
    for label, key, scale, digits in rows:
        cells = [text(summary["per_precision"][p][key], scale, digits) for p in PRECISIONS]
        lines.append(f"{label:<34}{cells[0]:>26}{cells[1]:>26}")
    lines.append("")
    lines.append("paired by seed (mean [95% interval]):")
    for key, d in summary["bf16_over_fp32"].items():
        ci = d["ci95"]
        interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
        lines.append(f"  bf16 / fp32 {key:<26}{d['mean']:.2f}x{interval} (n={d['n']})")
    for key, d in summary["bf16_minus_fp32"].items():
        ci = d["ci95"]
        interval = f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]" if ci else ""
        lines.append(f"  bf16 - fp32 {key:<26}{100 * d['mean']:+.2f} points{interval} (n={d['n']})")
    overlap = ", ".join(f"seed {s}: {100 * v:.1f}%" for s, v in summary["subset_overlap"].items())
    lines.append(f"  final subsets shared by fp32 and bf16 (intersection / union): {overlap}")
    if result.get("rescored_in_fp32"):
        shared = ", ".join(f"seed {s}: {100 * v['chosen_shared']:.1f}%" for s, v in result["rescored_in_fp32"].items())
        lines.append(f"  step 1 of the bf16 runs scored again in fp32, chosen rows shared: {shared}")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    seeds = sorted({r["seed"] for r in runs})
    width = 0.38
    for k, p in enumerate(PRECISIONS):
        values = [
            next((r["search_seconds"] for r in runs if r["seed"] == s and r["precision"] == p), np.nan) for s in seeds
        ]
        left.bar(np.arange(len(seeds)) + (k - 0.5) * width, values, width, label=p)
    left.set_xticks(np.arange(len(seeds)), [f"seed {s}" for s in seeds])
    left.set_ylabel("search seconds (ensemble training + scoring)")
    left.set_title("Time of the search")
    left.legend()
    for k, p in enumerate(PRECISIONS):
        for j, v in enumerate(VARIANTS):
            accs = [100 * np.mean(r["variants"][v]["test_accuracy"]) for r in runs if r["precision"] == p]
            x = j + (k - 0.5) * width
            right.scatter(np.full(len(accs), x), accs, color=f"C{k}", s=18, label=p if j == 0 else None)
            if len(accs):
                right.hlines(np.mean(accs), x - 0.15, x + 0.15, color=f"C{k}")
    right.set_xticks(np.arange(len(VARIANTS)), VARIANTS)
    right.set_ylabel("test accuracy %, per seed (line: mean)")
    right.set_title("Subset models (mean of 2 per run)")
    right.legend()
    cpu = result["machine"]
    fig.suptitle(
        f"configs/demo.yaml, fp32 vs bf16 autocast on {cpu['cpu']} ({cpu['cores']} cores, "
        f"avx512_bf16={cpu['avx512_bf16']}, amx={cpu['amx_bf16']})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(result: dict, out: Path) -> None:
    result["summary"] = summarise(result["runs"]) if result["runs"] else {}
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 3,000-image pool, 4 epochs, 2 seeds")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG and print the table from the JSON")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or (RESULTS.with_name("precision_quick.json") if args.quick else RESULTS)
    if args.replot:
        result = json.loads(out.read_text())
        plot(result, out.with_suffix(".png"))
        print(table(result))
        return
    from subsetsearch.pipeline.config import parse_config
    from subsetsearch.pipeline.progress import Reporter
    from subsetsearch.pipeline.run import run_config

    work = ROOT / ".data" / ("precision_quick" if args.quick else "precision")
    result = {
        "command": "python benchmarks/precision.py" + (" --quick" if args.quick else ""),
        "config": "configs/demo.yaml" + (" (quick: 3,000 pool, 4 epochs)" if args.quick else ""),
        "machine": machine(),
        "runs": [],
    }
    if out.is_file():  # finished runs of an interrupted benchmark
        result["runs"] = json.loads(out.read_text()).get("runs", [])
    done = {(r["seed"], r["precision"]) for r in result["runs"]}
    for seed in range(2 if args.quick else args.seeds):
        for precision in PRECISIONS:
            if (seed, precision) in done:
                continue
            config = parse_config(run_config_dict(seed, precision, args.quick), "benchmark")
            started = time.perf_counter()
            with Reporter() as reporter:
                run_config(config, work / config.name, reporter)
            result["runs"].append(record_of(work / config.name, seed, precision, time.perf_counter() - started))
            save(result, out)
            print(f"seed {seed} {precision}: done", flush=True)
    result.setdefault("rescored_in_fp32", {})
    for run in result["runs"]:
        if run["precision"] == "bf16" and str(run["seed"]) not in result["rescored_in_fp32"]:
            result["rescored_in_fp32"][str(run["seed"])] = rescored_in_fp32(work / f"bf16-seed{run['seed']}")
            save(result, out)
    save(result, out)
    plot(result, out.with_suffix(".png"))
    print(table(result))


if __name__ == "__main__":
    main()
