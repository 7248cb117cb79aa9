"""Which CPU settings the trainer uses by default, measured: channels-last, bf16 autocast, malloc tuning.

    .venv/bin/python benchmarks/train_throughput.py            # cnn_small w16 on 28×28, resnet10 w16 on 32×32
    .venv/bin/python benchmarks/train_throughput.py --replot

Each setting runs in a fresh process (malloc settings apply per process), training steps
(SGD, batch 128) and inference (batch 1024) for a fixed time, settings interleaved over
``--repeats`` rounds; the ratio to fp32 NCHW without malloc tuning (the baseline) is the median
over the rounds. Results: benchmarks/results/train_throughput.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "train_throughput.json"
SETTINGS = {  # name: (channels_last, bf16, malloc tuning)
    "fp32 NCHW (baseline)": (False, False, False),
    "fp32 NCHW + malloc": (False, False, True),
    "fp32 channels-last + malloc (default)": (True, False, True),
    "bf16 channels-last + malloc": (True, True, True),
}
MODELS = {"cnn_small": (16, 28, 1), "resnet10": (16, 32, 3)}

CHILD = r"""
import json, sys, time
cl, bf16, tune, name, width, size, cin, seconds = json.loads(sys.argv[1])
if tune:
    from subsetsearch.internal.malloc import tune_malloc
    tune_malloc()
import torch
from subsetsearch.train.models import build_model
torch.manual_seed(0)
model = build_model(name, cin, 10, width)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
fmt = torch.channels_last if cl else torch.contiguous_format
model = model.to(memory_format=fmt)
x = torch.randn(128, cin, size, size).contiguous(memory_format=fmt)
y = torch.randint(0, 10, (128,))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(3):
    step()
t = time.perf_counter(); n = 0
while time.perf_counter() - t < seconds:
    step(); n += 128
train = n / (time.perf_counter() - t)
model.eval()
xb = torch.randn(1024, cin, size, size).contiguous(memory_format=fmt)
with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
    model(xb)
    t = time.perf_counter(); n = 0
    while time.perf_counter() - t < seconds:
        model(xb); n += 1024
print(json.dumps({"train": train, "infer": n / (time.perf_counter() - t)}))
"""


def measure(setting: tuple[bool, bool, bool], model: str, seconds: float) -> dict:
    width, size, cin = MODELS[model]
    args = json.dumps([*setting, model, width, size, cin, seconds])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", CHILD, args], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, kind in zip(axes, ("train", "infer"), strict=True):
        names = list(SETTINGS)
        for i, model in enumerate(MODELS):
            ratios = [results["ratios"][model][name][kind] for name in names]
            ax.barh(np.arange(len(names)) + 0.4 * i, ratios, height=0.4, label=model)
        ax.axvline(1, color="k", lw=1)
        ax.set_yticks(np.arange(len(names)) + 0.2, names)
        ax.set_xlabel(f"{kind} throughput ÷ baseline (median)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--replot", action="store_true")
    args = parser.parse_args()
    if args.replot:
        results = json.loads(RESULTS.read_text())
    else:
        raw: dict = {m: {s: [] for s in SETTINGS} for m in MODELS}
        for _ in range(args.repeats):
            for model in MODELS:
                for name, setting in SETTINGS.items():  # interleaved: drift hits every setting alike
                    raw[model][name].append(measure(setting, model, args.seconds))
        ratios: dict = {}
        for model in MODELS:
            base = raw[model]["fp32 NCHW (baseline)"]
            ratios[model] = {
                name: {
                    kind: float(np.median([r[kind] / b[kind] for r, b in zip(runs, base, strict=True)]))
                    for kind in ("train", "infer")
                }
                for name, runs in raw[model].items()
            }
        results = {
            "command": "python benchmarks/train_throughput.py",
            "cpu_count": os.cpu_count(),
            "models": {m: {"width": w, "image": s, "channels": c} for m, (w, s, c) in MODELS.items()},
            "images_per_second": raw,
            "ratios": ratios,
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, RESULTS.with_suffix(".png"))
    for model in MODELS:
        for name in SETTINGS:
            r = results["ratios"][model][name]
            base = np.median([x["train"] for x in results["images_per_second"][model][name]])
            line = f"{model:<10} {name:<40} train {r['train']:5.2f}x  infer {r['infer']:5.2f}x"
            print(f"{line}  ({base:.0f} img/s train)")


if __name__ == "__main__":
    main()
