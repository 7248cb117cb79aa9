"""How many SGD steps apart must two checkpoints be to disagree? The paper's Figure 4, like for like.

    .venv/bin/python benchmarks/checkpoint_agreement.py            # seeds 0-2; resumable by seed
    .venv/bin/python benchmarks/checkpoint_agreement.py --replot   # JSON -> PNG and the printed table

The paper's checkpoints (epochs 131-150 of ResNet-18 on ImageNet's 40%, after its last lr drop) are
2,000 to 4,000 SGD steps apart; the consensus study's are 32. Here the peers benchmark's full model
(cnn_small on the 55,000-image pool, 10 epochs, lr 0.1 dropped x0.1 after epochs 5 and 8) goes on
at its final lr, 0.001, with its momentum, batch 128 and flips, for :data:`STEPS` more SGD steps,
keeping a checkpoint every :data:`EVERY` steps (the run's end is the first). Every checkpoint
predicts the 15,000 images it never trained on (the 5,000 held-out validation images and the
10,000 test images). For every gap g between two checkpoints, in steps: the share of rows the two
predict alike (over every pair g apart), and their disagreement as a share of its cap (two
checkpoints can only disagree where at least one is wrong, so disagreement <= the sum of their
error rates); and the share of rows on which :data:`ALL` checkpoints :data:`ALL_EVERY` steps apart
all agree (the paper's "all 20 agree").

Results: benchmarks/results/checkpoint_agreement.{json,png}. Scratch (checkpoints' predictions) in
benchmarks/.data/checkpoint_agreement/.
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
import peers
from summary_stats import mean_sd

from subsetsearch.internal.atomic import atomic_path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "checkpoint_agreement.json"
WORK = ROOT / ".data" / "checkpoint_agreement"
SEEDS = 3
STEPS = 2560
EVERY = 64
GAPS = (64, 128, 256, 512, 1024, 2048)
ALL = 20
ALL_EVERY = 128
FINAL_LR = 0.001
#: The paper's consecutive ImageNet checkpoints (Figure 4) predict about this share of rows alike (%).
PAPER_AGREE = 58


def continue_at_final_lr(bench: peers.Bench, seed: int, folder: Path) -> np.ndarray:
    """Predicted classes [checkpoints, rows] on the held-out rows, every :data:`EVERY` steps of
    training on at the final lr from the full run's last state (model and momentum)."""
    import torch
    from safetensors.torch import load_file

    from subsetsearch.train import trainer

    config = peers.train_config(bench, "epochs", 1.0)
    network = peers.network(bench, config)
    net = network.build(0)
    state = load_file(str(folder / "state.safetensors"))
    net.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
    optimizer = torch.optim.SGD(
        net.parameters(), lr=FINAL_LR, momentum=config.momentum, weight_decay=config.weight_decay
    )
    saved = optimizer.state_dict()
    saved["state"] = {
        int(k.split(".")[1]): {"momentum_buffer": v} for k, v in state.items() if k.startswith("momentum.")
    }
    if len(saved["state"]) != len(list(net.parameters())):
        raise SystemExit(f"{folder}: the state holds {len(saved['state'])} momentum buffers, not one per parameter")
    optimizer.load_state_dict(saved)
    held = [bench.validation, bench.test]
    loss_of = trainer.classification_loss(network, bench.pool)
    generator = torch.Generator().manual_seed(peers.model_seed(seed, 500))

    def predictions() -> np.ndarray:
        return np.concatenate([trainer.predict(network, net, data).argmax(axis=1) for data in held]).astype(np.int8)

    out = [predictions()]
    rows = np.arange(len(bench.pool_y))
    step, epoch = 0, 100  # batch orders of epochs the run never had
    while step < STEPS:
        epoch += 1
        order = trainer.epoch_order(rows, peers.model_seed(seed), epoch, config.batch_size)
        size = config.batch_size
        blocks = [torch.from_numpy(order[b : b + size]) for b in range(0, len(order), size)]
        for index, images in zip(blocks, bench.pool.batches(blocks), strict=True):
            net.train()
            loss = loss_of(net, images, index, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % EVERY == 0:
                out.append(predictions())
            if step == STEPS:
                break
    return np.stack(out)


def measure(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """Agreement by gap, disagreement against its cap, and all-:data:`ALL`-agree, of predicted
    classes [checkpoints, rows] (checkpoint k is k * :data:`EVERY` steps after the first)."""
    errors = (predicted != truth[None, :]).mean(axis=1)
    by_gap = {}
    for gap in GAPS:
        k = gap // EVERY
        agree = [float(np.mean(predicted[i] == predicted[i + k])) for i in range(len(predicted) - k)]
        # a pair of checkpoints that are both never wrong cannot disagree: it has no cap to share
        capped = [(1 - a) / (errors[i] + errors[i + k]) for i, a in enumerate(agree) if errors[i] + errors[i + k] > 0]
        by_gap[str(gap)] = {
            "agree": float(np.mean(agree)),
            "of_cap": float(np.mean(capped)) if capped else 0.0,
            "pairs": len(agree),
        }
    chosen = predicted[:: ALL_EVERY // EVERY][:ALL]
    if len(chosen) != ALL:
        raise SystemExit(f"{len(chosen)} checkpoints {ALL_EVERY} steps apart, not {ALL}: raise STEPS")
    all_agree = float(np.mean(np.all(chosen == chosen[0], axis=0)))
    return {"error": [float(e) for e in errors], "by_gap": by_gap, "all_agree": all_agree}


def table(results: dict) -> str:
    seeds = sorted(results["seeds"], key=int)
    lines = [
        f"Seeds {', '.join(seeds)}: mean ± sample sd over seeds (n={len(seeds)})",
        "| steps apart | checkpoints agree (%) | disagreement / its cap (%) |",
        "|---|---|---|",
    ]
    for gap in GAPS:
        agree = [100 * results["seeds"][s]["by_gap"][str(gap)]["agree"] for s in seeds]
        of_cap = [100 * results["seeds"][s]["by_gap"][str(gap)]["of_cap"] for s in seeds]
        lines.append(f"| {gap} | {_text(agree)} | {_text(of_cap)} |")
    every = [100 * results["seeds"][s]["all_agree"] for s in seeds]
    errors = [100 * float(np.mean(results["seeds"][s]["error"])) for s in seeds]
    lines += [
        "",
        f"All {ALL} checkpoints {ALL_EVERY} steps apart (spanning {(ALL - 1) * ALL_EVERY} steps) agree on "
        f"{_text(every)}% of the rows; each checkpoint's error there: {_text(errors)}%.",
    ]
    return "\n".join(lines)


def _text(values: list[float]) -> str:
    s = mean_sd(values)
    return f"{s['mean']:.2f} ± {s['sd']:.2f}" if s["sd"] is not None else f"{s['mean']:.2f}"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    for seed, r in sorted(results["seeds"].items(), key=lambda kv: int(kv[0])):
        ax.plot(GAPS, [100 * r["by_gap"][str(g)]["agree"] for g in GAPS], marker="o", label=f"seed {seed}")
    ax.axvspan(2000, 4000, color="0.9", label="the paper's gap between checkpoints")
    ax.hlines(PAPER_AGREE, 2000, 4000, colors="k", linestyles="--", label=f"the paper: about {PAPER_AGREE:g}% alike")
    ax.set_ylim(50, 100.5)
    ax.set_xscale("log", base=2)
    ax.set_xticks(GAPS, [str(g) for g in GAPS])
    ax.set_xlabel("SGD steps between two checkpoints (lr 0.001, batch 128)")
    ax.set_ylabel("rows predicted alike (%)")
    ax.set_title("cnn_small on Fashion-MNIST's 55,000-image pool: 15,000 rows never trained on", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--replot", action="store_true")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"seeds": {}}
    if not args.replot:
        bench = peers.prepare(peers.ROOT / ".data" / "peers", quick=False)
        truth = np.concatenate([bench.validation.y.cpu().numpy(), bench.test_y])
        for seed in range(args.seeds):
            if str(seed) in results["seeds"]:
                continue
            started = time.perf_counter()
            full, _ = peers.full_run(bench, seed)  # the peers benchmark's run; trained if it is not there
            predicted = continue_at_final_lr(bench, seed, full["folder"])
            WORK.mkdir(parents=True, exist_ok=True)
            with atomic_path(WORK / f"seed{seed}.npy") as tmp, open(tmp, "wb") as handle:
                np.save(handle, predicted)
            results["seeds"][str(seed)] = {**measure(predicted, truth), "seconds": time.perf_counter() - started}
            results.update(
                command="python benchmarks/checkpoint_agreement.py",
                machine=f"{platform.processor() or platform.machine()}, 2 threads",
                steps=STEPS,
                every=EVERY,
                final_lr=FINAL_LR,
                rows=len(truth),
            )
            with atomic_path(RESULTS) as tmp:
                tmp.write_text(json.dumps(results, indent=1) + "\n")
            print(f"seed {seed}: {results['seeds'][str(seed)]['by_gap']}", flush=True)
    if results["seeds"]:
        plot(results, RESULTS.with_suffix(".png"))
        print(table(results))


if __name__ == "__main__":
    main()
