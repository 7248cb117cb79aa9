"""subsetsearch against the scores users would pick instead, on all of Fashion-MNIST, with fair budgets.

    .venv/bin/python benchmarks/peers.py                 # 5 seeds; resumes; hours on 2 cores
    .venv/bin/python benchmarks/peers.py --seeds 1       # seed 0 only
    .venv/bin/python benchmarks/peers.py --quick         # 6,000-image pool, 3 epochs: a smoke run
    .venv/bin/python benchmarks/peers.py --replot        # tables and PNG from the JSON

Data: Fashion-MNIST's 60,000 training images. 5,000 of them (stratified, fixed) are the
validation set that the patience schedule and the convergence curve need; the other 55,000 are
the pool every method chooses from. The 10,000 test images judge. Every subset model is
cnn_small (width 16, SGD, batch 128, lr 0.1, flips) trained by ``subsetsearch.train.trainer`` from
the same seed for every method of a seed, under two budgets:

- ``epochs``: the full model's schedule, 10 epochs, lr x0.1 at 5 and 7 (the paper's ImageNet
  protocol: the saving is the fewer steps);
- ``converge``: the patience schedule (x0.1 after 2 epochs without a validation gain, stop 4 epochs
  after a drop that brought none), capped at 20 / fraction epochs (the paper's CIFAR protocol).

Methods, at 25% and 50% of the pool (80% for build-up, random and full):

- ``build_up/mutual_information``, ``build_up/variation_ratios``: ``subsetsearch run`` with a random
  start of S/16 (50%) or S/8 (25%, 80%) and doubling: budgets 3.125, 6.25, 12.5, 25, 50% and
  10, 20, 40, 80%; each step an ensemble of the checkpoints of epochs 6-10 of one run on the subset;
- ``compress/mutual_information``: ``subsetsearch run``, the same ensemble trained on the whole pool;
- ``el2n``, ``forgetting``, ``dyn_unc``, ``variability``: from the checkpoints of the full model's own
  run (``epochs`` budget), so they cost one scoring pass: EL2N from epochs 1-2 (Paul et al.
  score early, at 10% of training), the others from every epoch 1-10 (forgetting over training;
  Dyn-Unc over training with a window J = 5: He et al.'s J = 10 over 10 checkpoints would be one
  window, the same as variability; cartography over training);
- the same four ``@train``: zero-cost members, the outputs the full model gave on its own training
  batches (``PoolScorer(members="train")``), no inference pass;
- ``random``, and ``full``.

Records (benchmarks/results/peers.json): method, fraction, seed, budget, learner, test_accuracy,
train_seconds, search_seconds, unique_samples, epochs_trained. The selections are kept per seed
as packed masks in benchmarks/results/peers_subsets/ (so a later session resumes without
re-searching) and, for seed 0 at 50%, as .npy of Fashion-MNIST training-set rows in
benchmarks/results/subsets/. Transfer (the paper's Table V): the 50% and 80% subsets of every
method trained with resnet10 (width 8, 6 epochs) and with a logistic regression on the pixels.
Ensembles of subset models (the paper's metric): 3 models for build-up, random and full, epochs
budget. Everything resumes: a record in the JSON is never recomputed.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary_stats import difference, mean_sd, paired, text

from subsetsearch.internal.atomic import atomic_path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "peers.json"
SELECTIONS = ROOT / "results" / "peers_subsets"
SUBSETS = ROOT / "results" / "subsets"
VALIDATION = 5000
SPLIT_SEED = 12345
EPOCHS = 10
WIDTH = 16
FRACTIONS = (0.25, 0.5)
LARGE = 0.8
LARGE_METHODS = ("build_up/mutual_information", "build_up/variation_ratios", "random")
PEERS = ("el2n", "forgetting", "dyn_unc", "variability")
BUILD_UP = ("mutual_information", "variation_ratios")
PATHS = {"a": (0.03125, 0.0625, 0.125, 0.25, 0.5), "b": (0.1, 0.2, 0.4, 0.8)}
ENSEMBLE = {"kind": "checkpoints", "start": 6, "stop": 10, "step": 1}
ENSEMBLE_MODELS = 3
SEEDS = 5
TRANSFER_FRACTIONS = (0.5, 0.8)
TRANSFER_EPOCHS = 6
TRANSFER_WIDTH = 8
#: Dyn-Unc's window over the 10 checkpoints: J = 10 would be one window, i.e. variability.
DYN_UNC_WINDOW = 5


def peer_epochs(function: str, epochs: int) -> list[int]:
    """The full run's checkpoints a peer score reads: EL2N early, the others over training."""
    if function == "el2n":
        return list(range(1, max(1, round(0.2 * epochs)) + 1))
    return list(range(1, epochs + 1))


def methods() -> list[str]:
    out = [f"build_up/{f}" for f in BUILD_UP] + ["compress/mutual_information"]
    out += list(PEERS) + [f"{p}@train" for p in PEERS] + ["random"]
    return out


def fractions_of(method: str) -> tuple[float, ...]:
    return (*FRACTIONS, LARGE) if method in LARGE_METHODS else FRACTIONS


# ------------------------------------------------------------------ records
def key(record: dict) -> tuple:
    return (record["method"], record["fraction"], record["seed"], record["budget"], record["learner"])


def load_records(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def save_records(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(records, key=lambda r: (r["seed"], r["learner"], r["budget"], r["fraction"], r["method"]))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(ordered, indent=1) + "\n")


# ------------------------------------------------------------------ data
@dataclass
class Bench:
    """The pool, validation and test tensors, the networks, and where the work lives."""

    work: Path
    pool_rows: np.ndarray  # Fashion-MNIST training-set row of each pool row
    pool_y: np.ndarray
    test_y: np.ndarray
    pool: object
    validation: object
    test: object
    arrays: dict
    epochs: int
    quick: bool


def prepare(work: Path, quick: bool) -> Bench:
    from subsetsearch.internal.malloc import tune_malloc

    tune_malloc()
    from subsetsearch.train import trainer
    from subsetsearch.train.data import load_fashion_mnist, stratified_split

    trainer.set_threads(2)
    train, test = load_fashion_mnist()
    x, y = train.x, train.y
    if quick:
        keep = np.sort(np.random.default_rng(0).permutation(len(y))[:6500])
        x, y = x[keep], y[keep]
        test_keep = np.sort(np.random.default_rng(1).permutation(len(test.y))[:2000])
        test_x, test_y = test.x[test_keep], test.y[test_keep]
        rows_of = keep
    else:
        test_x, test_y = test.x, test.y
        rows_of = np.arange(len(y))
    pool_part, held = stratified_split(y, (500 if quick else VALIDATION) / len(y), SPLIT_SEED)
    device = trainer.resolve_device("cpu")
    mean, std = trainer.channel_stats(x[pool_part])
    work.mkdir(parents=True, exist_ok=True)
    arrays = {"pool": work / "pool.npz", "test": work / "test.npz"}
    for name, (ax, ay) in {"pool": (x[pool_part], y[pool_part]), "test": (test_x, test_y)}.items():
        if not arrays[name].is_file():
            with atomic_path(arrays[name]) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, x=ax, y=ay)
    return Bench(
        work=work,
        pool_rows=rows_of[pool_part],
        pool_y=y[pool_part],
        test_y=test_y,
        pool=trainer.TensorData.build(x[pool_part], y[pool_part], mean, std, device),
        validation=trainer.TensorData.build(x[held], y[held], mean, std, device),
        test=trainer.TensorData.build(test_x, test_y, mean, std, device),
        arrays=arrays,
        epochs=3 if quick else EPOCHS,
        quick=quick,
    )


def train_config(bench: Bench, budget: str, fraction: float, *, epochs: int | None = None):
    from subsetsearch.train.settings import AugmentConfig, PatienceSchedule, TrainConfig

    epochs = epochs or bench.epochs
    common = {"batch_size": 128, "augment": AugmentConfig(crop_padding=0, flip=True), "threads": 2, "device": "cpu"}
    if budget == "epochs":
        return TrainConfig(epochs=epochs, **common)
    cap = math.ceil(2 * epochs / fraction)
    return TrainConfig(epochs=cap, schedule=PatienceSchedule(kind="patience", patience=2), **common)


def network(bench: Bench, config, model: str = "cnn_small", width: int = WIDTH):
    from subsetsearch.train import trainer
    from subsetsearch.train.settings import ModelConfig

    return trainer.Network(ModelConfig(name=model, width=width), config, 1, 10, trainer.resolve_device("cpu"))


def model_seed(seed: int, k: int = 0) -> int:
    return 1000 * seed + 17 + k


# ------------------------------------------------------------------ the full run and its peers
def full_run(bench: Bench, seed: int) -> tuple[dict, dict[str, float]]:
    """The full model (epochs budget) with every epoch's checkpoint and its training-pass members.

    Returns the run and its two training-pass scorers (``early``: EL2N's epochs; ``all``), and the
    seconds spent inside each scorer's calls (0 where the run was done already).
    """
    import torch

    from subsetsearch.torch import PoolScorer
    from subsetsearch.train import trainer

    folder = bench.work / f"seed{seed}" / "full_epochs" / "model_0"
    net_spec = network(bench, train_config(bench, "epochs", 1.0))
    scorers = {}
    for function in PEERS:
        chosen = peer_epochs(function, bench.epochs)
        name = "early" if function == "el2n" else "all"
        if name not in scorers:
            scorers[name] = PoolScorer(
                torch.utils.data.TensorDataset(torch.zeros(len(bench.pool_y))),  # unused: members come from batches
                epochs=chosen,
                stats=folder.parent / f"train_pass_{name}.npz",
                num_samples=len(bench.pool_y),
                labels=bench.pool_y,
                window=max(2, min(DYN_UNC_WINDOW, len(chosen) - 1)),
                members="train",
            )
    pending: list = []
    inside = dict.fromkeys(scorers, 0.0)
    batch_loss = trainer.classification_loss(
        net_spec, bench.pool, on_logits=lambda logits, index: pending.append((logits, index))
    )

    def progress(label: str, done: int, total: int) -> None:
        epoch = int(label.split()[1].split("/")[0])  # the trainer's label: "epoch E/EPOCHS"
        for name, scorer in scorers.items():
            started = time.perf_counter()
            for logits, index in pending:
                scorer.on_train_batch(logits, index, epoch)
            if done == total:
                scorer.on_epoch_end(None, epoch)
            inside[name] += time.perf_counter() - started
        pending.clear()

    spec = trainer.TrainSpec(
        folder, np.arange(len(bench.pool_y)), seed=model_seed(seed), save_epochs=frozenset(range(1, bench.epochs + 1)),
        save_last=True,
    )  # fmt: skip
    record = trainer.train_run(
        spec, net_spec, bench.pool, validation=bench.validation, batch_loss=batch_loss, progress=progress
    )
    return {"record": record, "folder": folder, "scorers": scorers}, inside


def eval_pass_scores(bench: Bench, folder: Path) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Each peer's scores from the full run's checkpoints (one inference pass per checkpoint), and
    the seconds each peer's pass took (inference of its checkpoints + the statistics)."""
    from subsetsearch.dynamics import TrainingDynamics
    from subsetsearch.train import trainer

    net_spec = network(bench, train_config(bench, "epochs", 1.0))
    model = net_spec.build(0)
    probs_of, seconds_of = {}, {}
    for epoch in range(1, bench.epochs + 1):
        started = time.perf_counter()
        trainer.load_weights(model, folder / f"epoch_{epoch:03d}.safetensors")
        probs_of[epoch] = trainer.predict(net_spec, model, bench.pool)
        seconds_of[epoch] = time.perf_counter() - started
    scores, seconds = {}, {}
    for function in PEERS:
        chosen = peer_epochs(function, bench.epochs)
        started = time.perf_counter()
        dynamics = TrainingDynamics(bench.pool_y, num_classes=10, window=max(2, min(DYN_UNC_WINDOW, len(chosen) - 1)))
        for epoch in chosen:
            dynamics.update(probs_of[epoch], position=epoch)
        scores[function] = dynamics.scores(function)
        seconds[function] = time.perf_counter() - started + sum(seconds_of[e] for e in chosen)
    return scores, seconds


def select_top(scores: np.ndarray, k: int, seed: int) -> np.ndarray:
    from subsetsearch.selection import select

    return np.sort(select(scores, k, seed=seed))


# ------------------------------------------------------------------ searches through `subsetsearch run`
def run_search(
    bench: Bench,
    seed: int,
    scheme: str,
    function: str,
    budgets: tuple[float, ...],
    options: dict | None = None,
    tag: str = "",
) -> tuple[list, list[float]]:
    """The subsets of every step of a ``subsetsearch run`` on the benchmark's pool, and the search
    seconds spent up to each step. ``options`` are further ``search`` keys (balance, coverage), in a
    run directory of their own named by ``tag``."""
    from subsetsearch.pipeline.config import parse_config
    from subsetsearch.pipeline.progress import Reporter
    from subsetsearch.pipeline.run import run_config
    from subsetsearch.rundir import SUBSET, Subset

    name = f"{scheme}-{function}-{'-'.join(f'{b:g}' for b in budgets)}{tag}"
    config = {
        "name": name,
        "seed": seed,
        "data": {"dataset": "arrays", "path": str(bench.arrays["pool"]), "test_path": str(bench.arrays["test"])},
        "model": {"name": "cnn_small", "width": WIDTH},
        "train": {
            "epochs": bench.epochs,
            "batch_size": 128,
            "augment": {"crop_padding": 0, "flip": True},
            "threads": 2,
            "device": "cpu",
        },
        "ensemble": {**ENSEMBLE, **({"start": 2, "stop": 3} if bench.quick else {})},
        "search": {"scheme": scheme, "function": function, "budgets": list(budgets), **(options or {})},
        # the run's own subset model is not used (every subset model is trained below, alike): one epoch
        "subset_model": {"models": 1, "steps": "final", "train": {"epochs": 1, "threads": 2, "device": "cpu"}},
    }
    folder = bench.work / f"seed{seed}" / name
    with Reporter() as reporter:
        run_config(parse_config(config, "peers benchmark"), folder, reporter)
    metrics = json.loads((folder / "metrics.json").read_text())
    subsets = [Subset.read(d / SUBSET) for d in sorted(folder.glob("iter_*"))]
    # the search's seconds up to each step: its ensembles' training and scoring so far
    spent = np.cumsum([step.get("train_seconds", 0.0) + step.get("score_seconds", 0.0) for step in metrics["steps"]])
    return subsets, [float(x) for x in spent]


# ------------------------------------------------------------------ selections (resumable, committed)
def selection_path(seed: int, quick: bool) -> Path:
    return SELECTIONS / f"{'quick_' if quick else ''}seed{seed}.npz"


def load_selections(path: Path) -> dict[str, tuple[np.ndarray, float]]:
    if not path.is_file():
        return {}
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        n = int(meta["pool"])
        return {
            name: (np.flatnonzero(np.unpackbits(data[name], count=n).astype(bool)), meta["seconds"][name])
            for name in meta["seconds"]
        }


def save_selections(path: Path, selections: dict[str, tuple[np.ndarray, float]], pool: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    masks = {}
    for name, (rows, _) in selections.items():
        mask = np.zeros(pool, dtype=bool)
        mask[rows] = True
        masks[name] = np.packbits(mask)
    meta = {"pool": pool, "seconds": {name: s for name, (_, s) in selections.items()}}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, meta=np.array(json.dumps(meta)), **masks)


def selection_name(method: str, fraction: float) -> str:
    return f"{method.replace('/', '~')}|{fraction:g}"


def make_selections(bench: Bench, seed: int, path: Path, log) -> dict[str, tuple[np.ndarray, float]]:
    """Every (method, fraction) subset of one seed with its search seconds; saved after each method."""
    selections = load_selections(path)
    n = len(bench.pool_y)
    wanted = [(m, f) for m in methods() for f in fractions_of(m)]
    if all(selection_name(m, f) in selections for m, f in wanted):
        return selections

    def keep(method: str, fraction: float, rows: np.ndarray, seconds: float) -> None:
        selections[selection_name(method, fraction)] = (np.sort(rows), seconds)
        save_selections(path, selections, n)

    order = np.random.default_rng([seed, 99]).permutation(n)
    for fraction in (*FRACTIONS, LARGE):
        keep("random", fraction, order[: round(fraction * n)], 0.0)
    missing_peers = any(selection_name(p, f) not in selections for p in PEERS for f in FRACTIONS)
    missing_train = any(selection_name(f"{p}@train", f) not in selections for p in PEERS for f in FRACTIONS)
    if missing_peers or missing_train:
        full, inside = full_run(bench, seed)
        scores, seconds = eval_pass_scores(bench, full["folder"])
        for function in PEERS:
            for fraction in FRACTIONS:
                rows = select_top(scores[function], round(fraction * n), seed)
                keep(function, fraction, rows, seconds[function])
        for function in PEERS:
            name = "early" if function == "el2n" else "all"
            train_scores = full["scorers"][name].dynamics.scores(function)
            for fraction in FRACTIONS:
                rows = select_top(train_scores, round(fraction * n), seed)
                keep(f"{function}@train", fraction, rows, inside[name])
        log(f"seed {seed}: peers selected (eval-pass scoring {seconds}, training-pass scorers {inside})")
    for function in BUILD_UP:
        method = f"build_up/{function}"
        for path_name, budgets in PATHS.items():
            targets = (0.25, 0.5) if path_name == "a" else (LARGE,)
            if all(selection_name(method, t) in selections for t in targets):
                continue
            subsets, spent = run_search(bench, seed, "build_up", function, budgets)
            for subset, budget, seconds in zip(subsets, budgets, spent, strict=True):
                if budget in targets:
                    keep(method, budget, subset.index, seconds)
            log(f"seed {seed}: {method} path {budgets} done ({spent[-1]:.0f} s)")
    method = "compress/mutual_information"
    if any(selection_name(method, f) not in selections for f in FRACTIONS):
        subsets, spent = run_search(bench, seed, "compress", "mutual_information", FRACTIONS)
        for subset, fraction in zip(subsets, FRACTIONS, strict=True):
            keep(method, fraction, subset.index, spent[-1])  # one ensemble and one scoring for both sizes
        log(f"seed {seed}: {method} done ({spent[-1]:.0f} s)")
    return selections


# ------------------------------------------------------------------ subset models
def train_subset(bench: Bench, rows: np.ndarray, *, seed: int, budget: str, fraction: float, folder: Path, k: int = 0):
    """Test probabilities, training seconds and epochs of one cnn_small subset model."""
    from subsetsearch.train import trainer

    config = train_config(bench, budget, fraction)
    net_spec = network(bench, config)
    spec = trainer.TrainSpec(folder, np.asarray(rows, dtype=np.int64), seed=model_seed(seed, k), save_last=True)
    record = trainer.train_run(spec, net_spec, bench.pool, validation=bench.validation)
    model = net_spec.build(0)
    trainer.load_weights(model, folder / "last.safetensors")
    probs = trainer.predict(net_spec, model, bench.test)
    return probs, record


def transfer_resnet(bench: Bench, rows: np.ndarray, *, seed: int, folder: Path) -> tuple[float, float]:
    from subsetsearch.train import trainer

    config = train_config(bench, "epochs", 1.0, epochs=3 if bench.quick else TRANSFER_EPOCHS)
    net_spec = network(bench, config, model="resnet10", width=TRANSFER_WIDTH)
    spec = trainer.TrainSpec(folder, np.asarray(rows, dtype=np.int64), seed=model_seed(seed), save_last=True)
    record = trainer.train_run(spec, net_spec, bench.pool, validation=bench.validation)
    model = net_spec.build(0)
    trainer.load_weights(model, folder / "last.safetensors")
    return trainer.accuracy(trainer.predict(net_spec, model, bench.test), bench.test_y), record.seconds


#: lbfgs's iteration cap for the logistic regression: far above the ~560 it needs on the whole
#: pool, so every fit stops on its tolerance (300, scikit-learn's usual choice here, stopped early).
LOGISTIC_MAX_ITER = 5000


def transfer_linear(bench: Bench, rows: np.ndarray) -> tuple[float, float, int]:
    """A logistic regression on the normalised pixels, fitted to lbfgs's tolerance: a learner of
    another family. Returns the test accuracy, the seconds and the iterations lbfgs took."""
    import torch
    from sklearn.linear_model import LogisticRegression

    def features(x) -> np.ndarray:  # the pixels, normalised by the pool's mean and std
        return ((x.float() - bench.pool.mean) / bench.pool.std).reshape(len(x), -1).numpy()

    started = time.perf_counter()
    model = LogisticRegression(max_iter=LOGISTIC_MAX_ITER, C=0.1)
    model.fit(features(bench.pool.x[torch.as_tensor(rows)]), bench.pool_y[rows])
    seconds = time.perf_counter() - started
    iterations = int(np.max(model.n_iter_))
    if iterations >= LOGISTIC_MAX_ITER:
        raise SystemExit(f"logistic regression unconverged at {iterations} iterations: raise LOGISTIC_MAX_ITER")
    return float(np.mean(model.predict(features(bench.test.x)) == bench.test_y)), seconds, iterations


#: The parts of the work. ``main`` runs every seed's selections and ``epochs`` models first (the
#: paired comparisons need seeds more than they need the rest), then, one seed at a time, the
#: patience budget, the ensembles of subset models and transfer.
PHASES = ("epochs", "converge", "ensemble", "transfer")


def measure_seed(bench: Bench, seed: int, records: list[dict], out: Path, log, phase: str) -> None:
    from subsetsearch.train import trainer

    done = {key(r) for r in records}
    selections = make_selections(bench, seed, selection_path(seed, bench.quick), log)
    n = len(bench.pool_y)

    def add(record: dict) -> None:
        records.append(record)
        done.add(key(record))
        save_records(out, records)

    if seed == 0 and not bench.quick:
        SUBSETS.mkdir(parents=True, exist_ok=True)
        for method in methods():
            target = SUBSETS / f"{method.replace('/', '_').replace('@', '_')}_50.npy"
            if not target.is_file():
                with atomic_path(target) as tmp, open(tmp, "wb") as handle:
                    np.save(handle, bench.pool_rows[selections[selection_name(method, 0.5)][0]].astype(np.int32))
    base = bench.work / f"seed{seed}" / "models"
    for budget in [phase] if phase in ("epochs", "converge") else []:
        jobs = [("full", 1.0, np.arange(n), 0.0)] + [
            (m, f, *selections[selection_name(m, f)]) for m in methods() for f in fractions_of(m)
        ]
        for method, fraction, rows, search_seconds in jobs:
            record_key = (method, fraction, seed, budget, "cnn_small")
            if record_key in done:
                continue
            folder = base / budget / selection_name(method, fraction).replace("|", "_") / "model_0"
            if method == "full" and budget == "epochs":
                folder = bench.work / f"seed{seed}" / "full_epochs" / "model_0"  # the peers' own run
            probs, record = train_subset(bench, rows, seed=seed, budget=budget, fraction=fraction, folder=folder)
            add(
                {
                    "method": method,
                    "fraction": fraction,
                    "seed": seed,
                    "budget": budget,
                    "learner": "cnn_small",
                    "test_accuracy": trainer.accuracy(probs, bench.test_y),
                    "train_seconds": record.seconds,
                    "search_seconds": search_seconds,
                    "unique_samples": len(rows),
                    "epochs_trained": len(record.history),
                    "validation_curve": [h.get("val_accuracy") for h in record.history],
                }
            )
            log(f"seed {seed} {budget} {method} {fraction:g}: {100 * add_last(records):.2f}%")
    # the paper's metric: an ensemble of subset models (build-up, random, full; epochs budget)
    for method, fraction, rows, search_seconds in [("full", 1.0, np.arange(n), 0.0)] + [
        (m, f, *selections[selection_name(m, f)]) for m in ("build_up/mutual_information", "random") for f in
        fractions_of(m)
    ] if phase == "ensemble" else []:  # fmt: skip
        record_key = (method, fraction, seed, "epochs", f"cnn_small_x{ENSEMBLE_MODELS}")
        if record_key in done:
            continue
        total, seconds, accuracies = None, 0.0, []
        for k in range(ENSEMBLE_MODELS):
            folder = base / "ensemble" / selection_name(method, fraction).replace("|", "_") / f"model_{k}"
            if k == 0:
                folder = (
                    bench.work / f"seed{seed}" / "full_epochs" / "model_0"
                    if method == "full"
                    else base / "epochs" / selection_name(method, fraction).replace("|", "_") / "model_0"
                )
            probs, record = train_subset(bench, rows, seed=seed, budget="epochs", fraction=fraction, folder=folder, k=k)
            total = probs.astype(np.float64) if total is None else total + probs
            seconds += record.seconds
            accuracies.append(trainer.accuracy(probs, bench.test_y))
        add(
            {
                "method": method,
                "fraction": fraction,
                "seed": seed,
                "budget": "epochs",
                "learner": f"cnn_small_x{ENSEMBLE_MODELS}",
                "test_accuracy": trainer.accuracy(total, bench.test_y),
                "member_accuracies": accuracies,
                "train_seconds": seconds,
                "search_seconds": search_seconds,
                "unique_samples": len(rows),
            }
        )
        log(f"seed {seed} ensemble of {ENSEMBLE_MODELS} {method} {fraction:g}: {100 * add_last(records):.2f}%")
    # transfer: the 50% and 80% subsets to a larger network and to a linear model
    jobs = [("full", 1.0, np.arange(n), 0.0)] + [
        (m, f, *selections[selection_name(m, f)]) for m in methods() for f in fractions_of(m) if f in TRANSFER_FRACTIONS
    ]
    for learner in ("logistic", "resnet10") if phase == "transfer" else ():
        for method, fraction, rows, search_seconds in jobs:
            if (method, fraction, seed, "epochs", learner) in done:
                continue
            extra = {}
            if learner == "logistic":
                accuracy, seconds, extra["iterations"] = transfer_linear(bench, rows)
            else:
                folder = base / "resnet10" / selection_name(method, fraction).replace("|", "_") / "model_0"
                accuracy, seconds = transfer_resnet(bench, rows, seed=seed, folder=folder)
            add(
                {
                    "method": method,
                    "fraction": fraction,
                    "seed": seed,
                    "budget": "epochs",
                    "learner": learner,
                    "test_accuracy": accuracy,
                    "train_seconds": seconds,
                    "search_seconds": search_seconds,
                    "unique_samples": len(rows),
                    **extra,
                }
            )
            log(f"seed {seed} {learner} {method} {fraction:g}: {100 * accuracy:.2f}%")


def add_last(records: list[dict]) -> float:
    return records[-1]["test_accuracy"]


# ------------------------------------------------------------------ tables and plot
def groups_of(records: list[dict], budget: str, learner: str) -> dict[tuple[str, float], dict[int, dict]]:
    out: dict[tuple[str, float], dict[int, dict]] = {}
    for r in records:
        if r["budget"] == budget and r["learner"] == learner:
            out.setdefault((r["method"], r["fraction"]), {})[r["seed"]] = r
    return out


def break_even(search: float, subset: float, full: float) -> str:
    """Reuses r at which search + r * subset < r * full."""
    if subset >= full:
        return "never"
    return f"{math.floor(search / (full - subset)) + 1}"


def side(d: dict) -> str | None:
    """Where a :func:`paired` difference's 95% interval lies: "above" or "below" zero, "within"
    (contains it), or None for n < 2."""
    if d["ci95"] is None:
        return None
    return "above" if d["ci95"][0] > 0 else "below" if d["ci95"][1] < 0 else "within"


#: A tie is claimed only when the whole 95% interval of a paired difference lies within this many
#: points of zero (half of build-up's gain over random at 25% and 50%); a wider interval that holds
#: zero is "undecided". Introduced when the `converge` budget had two seeds and the ensembles and
#: transfer one; it replaced "a tie whenever the interval holds zero", which called n=2 intervals
#: of ±4 points ties and the full model converged.
TIE_POINTS = 0.5


def verdict(d: dict) -> str:
    """'wins' / 'loses' when the 95% interval of a :func:`paired` difference excludes zero, 'ties'
    when it lies within ±:data:`TIE_POINTS`, 'undecided' when it is wider, 'n < 2' for one seed."""
    where = side(d)
    if where is None:
        return "n < 2"
    if where != "within":
        return {"above": "wins", "below": "loses"}[where]
    return "ties" if 100 * max(-d["ci95"][0], d["ci95"][1]) <= TIE_POINTS else "undecided"


def table(records: list[dict], budget: str, learner: str = "cnn_small") -> str:
    groups = groups_of(records, budget, learner)
    if not groups:
        return ""
    full = {s: r["test_accuracy"] for s, r in groups.get(("full", 1.0), {}).items()}
    full_seconds = np.mean([r["train_seconds"] for r in groups.get(("full", 1.0), {}).values()] or [np.nan])
    lines = [
        f"budget {budget}, learner {learner}: test accuracy %, mean ± sample sd (n seeds); paired differences "
        "(points, mean [95% interval]); seconds; reuses to break even",
        "| method | size | accuracy | − random | − full | search s | train s | full s | break-even reuses |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    for (method, fraction), by_seed in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        accuracy = {s: r["test_accuracy"] for s, r in by_seed.items()}
        random = {s: r["test_accuracy"] for s, r in groups.get(("random", fraction), {}).items()}
        search = float(np.mean([r["search_seconds"] for r in by_seed.values()]))
        train = float(np.mean([r["train_seconds"] for r in by_seed.values()]))
        lines.append(
            f"| {method} | {100 * fraction:g}% | {text(mean_sd(list(accuracy.values())), 100)} | "
            f"{difference(paired(accuracy, random)) if method != 'random' else ''} | "
            f"{difference(paired(accuracy, full)) if method != 'full' else ''} | {search:.0f} | {train:.0f} | "
            f"{full_seconds:.0f} | {break_even(search, train, full_seconds) if method != 'full' else ''} |"
        )
    return "\n".join(lines)


#: A mean more than this many points below the full set's is drawn at the panel's edge, with its value.
PLOT_DEPTH = 5.0


def plot(records: list[dict], path: Path) -> None:
    """Small multiples: one panel per subset size (columns) and budget (rows), each method's test
    accuracy (mean ± sample sd over seeds) as a dot, methods sorted best first, with random at that
    size (dashed) and the full set (solid, its sd shaded) as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = [b for b in ("epochs", "converge") if groups_of(records, b, "cnn_small")]
    if not budgets:
        return
    fractions = sorted({f for b in budgets for (m, f) in groups_of(records, b, "cnn_small") if m not in ("full",)})
    fractions = [f for f in fractions if f < 1.0]
    longest = max(
        len({m for (m, f) in groups_of(records, b, "cnn_small") if f == fraction})
        for b in budgets
        for fraction in fractions
    )
    fig, axes = plt.subplots(
        len(budgets), len(fractions), figsize=(4.4 * len(fractions), 0.28 * longest * len(budgets) + 1.6),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for row, budget in enumerate(budgets):
        groups = groups_of(records, budget, "cnn_small")
        full = [100 * r["test_accuracy"] for r in groups.get(("full", 1.0), {}).values()]
        for col, fraction in enumerate(fractions):
            ax = axes[row, col]
            entries = []
            for (method, f), by_seed in groups.items():
                if f == fraction and method not in ("random", "full"):
                    summary = mean_sd([100 * r["test_accuracy"] for r in by_seed.values()])
                    entries.append((summary["mean"], summary["sd"] or 0.0, method, len(by_seed)))
            entries.sort(key=lambda e: e[0])  # the best at the top
            y = np.arange(len(entries))
            means = np.array([e[0] for e in entries])
            full_mean = float(np.mean(full)) if full else float(means.max())
            floor = max(float(means.min()) - 0.3, full_mean - PLOT_DEPTH)
            shown = np.maximum(means, floor)
            colours = ["tab:blue" if "@" not in e[2] else "tab:orange" for e in entries]
            bars = [e[1] if e[0] >= floor else 0.0 for e in entries]  # no bar for a point off the axis
            ax.errorbar(shown, y, xerr=bars, fmt="none", ecolor="0.6", lw=1)
            ax.scatter(shown, y, c=colours, s=18, zorder=3, marker="o")
            for yi, (mean, *_rest) in zip(y, entries, strict=True):
                if mean < floor:
                    ax.annotate(f"◀ {mean:.1f}", (floor, yi), xytext=(4, -3), textcoords="offset points", fontsize=7)
            ax.set_yticks(y, [e[2] for e in entries], fontsize=8)
            words, low = [], floor
            random = groups.get(("random", fraction))
            if random:
                mean = 100 * np.mean([r["test_accuracy"] for r in random.values()])
                low = min(low, mean)
                ax.axvline(mean, color="tab:red", ls="--", lw=1.2)
                words.append(f"random {mean:.2f}")
            if full:
                sd = np.std(full, ddof=1) if len(full) > 1 else 0.0
                ax.axvspan(full_mean - sd, full_mean + sd, color="0.88")
                ax.axvline(full_mean, color="k", lw=1.2)
                words.append(f"full {full_mean:.2f}")
            ax.set_xlim(low - 0.2, max(float(means.max()), full_mean) + 0.4)
            ax.set_title(f"{fraction:.0%}, budget '{budget}': " + ", ".join(words), fontsize=9)
            ax.set_xlabel("test accuracy (%), mean ± sample sd", fontsize=8)
            ax.tick_params(axis="x", labelsize=8)
            ax.grid(axis="x", alpha=0.3)
    seeds = sorted({s for b in budgets for v in groups_of(records, b, "cnn_small").values() for s in v})
    fig.suptitle(
        f"Fashion-MNIST, cnn_small, seeds {seeds}: random (red, dashed), the full set (black, ± sd shaded); "
        f"orange: members from the training pass (@train); ◀ off the axis, more than {PLOT_DEPTH:g} points below full",
        fontsize=9,
    )
    fig.savefig(path, dpi=120, bbox_inches="tight")


def headline(records: list[dict], budget: str = "epochs") -> str:
    """Every method's test accuracy by subset size: the README's table."""
    groups = groups_of(records, budget, "cnn_small")
    sizes = (*FRACTIONS, LARGE, 1.0)
    lines = ["| method | " + " | ".join(f"{100 * f:g}%" for f in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    for method in [*methods(), "full"]:
        cells = []
        for fraction in sizes:
            by_seed = groups.get((method, fraction), {})
            cells.append(text(mean_sd([r["test_accuracy"] for r in by_seed.values()]), 100) if by_seed else "")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(
    records: list[dict], budget: str, learner: str = "cnn_small", ours: str = "build_up/mutual_information"
) -> str:
    """Where ``ours`` wins, ties and loses against every other method of the same size, paired by
    seed, by :func:`verdict`, for subsets trained with ``learner``."""
    groups = groups_of(records, budget, learner)
    accuracy = {key: {s: r["test_accuracy"] for s, r in by_seed.items()} for key, by_seed in groups.items()}
    mine = {fraction: accuracy[(method, fraction)] for method, fraction in accuracy if method == ours}
    if not mine:
        return ""
    name = f"budget {budget}" if learner == "cnn_small" else f"learner {learner}"
    lines = [f"| {ours}, {name} | size | difference (points) | verdict |", "|---|---|---|---|"]
    for method, fraction in sorted(accuracy, key=lambda key: (key[1], key[0])):
        if fraction not in mine or method == ours:
            continue
        d = paired(mine[fraction], accuracy[(method, fraction)])
        if not d["n"]:
            continue
        lines.append(f"| vs {method} | {100 * fraction:g}% | {difference(d)} (n={d['n']}) | {verdict(d)} |")
    full = accuracy.get(("full", 1.0), {})
    for fraction in sorted(mine):
        d = paired(mine[fraction], full)
        if d["n"]:
            lines.append(f"| vs full | {100 * fraction:g}% | {difference(d)} (n={d['n']}) | {verdict(d)} |")
    return "\n".join(lines)


def goals(records: list[dict], budget: str) -> str:
    """Issue 17's goals, met or not (or not yet measured), for one budget."""
    groups = groups_of(records, budget, "cnn_small")
    full = {s: r["test_accuracy"] for s, r in groups.get(("full", 1.0), {}).items()}
    others = [m for m in methods() if not m.startswith("build_up/")]
    lines = []
    for ours in ("build_up/mutual_information", "build_up/variation_ratios"):
        for fraction in (0.5, LARGE):
            goal = f"- {ours} at {100 * fraction:g}% at least as accurate as full ({budget})"
            d = paired({s: r["test_accuracy"] for s, r in groups.get((ours, fraction), {}).items()}, full)
            if not d["n"]:
                lines.append(f"{goal}: **not measured**")
                continue
            state = "met" if d["mean"] >= 0 else "not met"
            provisional = f" (provisional: {SEEDS} seeds planned)" if d["n"] < SEEDS else ""
            lines.append(f"{goal}: **{state}**, {difference(d)} points, n={d['n']}{provisional}")
        for fraction in FRACTIONS:
            goal = f"- {ours} at {100 * fraction:g}% ahead of random and every peer, 95% interval ({budget})"
            missing = [m for m in [ours, *others] if (m, fraction) not in groups]
            if missing:
                lines.append(f"{goal}: **not measured** (no records yet: {', '.join(missing)})")
                continue
            mine = {s: r["test_accuracy"] for s, r in groups[(ours, fraction)].items()}
            behind = []
            for method in others:
                d = paired(mine, {s: r["test_accuracy"] for s, r in groups[(method, fraction)].items()})
                if side(d) != "above":
                    behind.append(method)
            detail = f" (not ahead by more than the interval of: {', '.join(behind)})" if behind else ""
            lines.append(f"{goal}: **{'not met' if behind else 'met'}**{detail}")
    return "\n".join(lines)


def convergence(records: list[dict]) -> str:
    """Whether the full model is converged: its validation accuracy per epoch under each budget, and
    what training it to convergence gains on the test set (paired by seed)."""
    parts = []
    for budget, title in (("epochs", "`epochs` budget (10 epochs)"), ("converge", "`converge` budget (patience)")):
        lines = []
        for r in sorted(records, key=lambda r: r["seed"]):
            if (r["method"], r["budget"], r["learner"]) == ("full", budget, "cnn_small") and r.get("validation_curve"):
                curve = ", ".join(f"{100 * v:.2f}" for v in r["validation_curve"])
                lines.append(f"- seed {r['seed']} ({len(r['validation_curve'])} epochs): {curve}")
        if lines:
            parts.append(f"Validation accuracy (%) of the full model by epoch, {title}:\n\n" + "\n".join(lines))
    full = {budget: groups_of(records, budget, "cnn_small").get(("full", 1.0), {}) for budget in ("epochs", "converge")}
    d = paired(*({s: r["test_accuracy"] for s, r in full[b].items()} for b in ("converge", "epochs")))
    if d["n"]:
        reading = {
            "n < 2": "one seed cannot tell whether 10 epochs is converged.",
            "wins": "training longer gains more than the interval: 10 epochs is not converged.",
            "loses": "training longer loses accuracy beyond the interval: 10 epochs is not short of convergence.",
            "ties": f"training longer gains less than {TIE_POINTS} points at 95%: 10 epochs is converged.",
            "undecided": f"the interval is wider than ±{TIE_POINTS} points: {d['n']} seeds cannot yet tell.",
        }[verdict(d)]
        parts.append(
            "Test accuracy of the full model trained to convergence minus trained 10 epochs: "
            f"{difference(d)} points (paired by seed, n={d['n']}); {reading}"
        )
    return "\n\n".join(parts)


def beside(records: list[dict]) -> str:
    """The paper's metric beside single-model accuracy: for each method and size that has an
    ensemble of subset models, the single model (the ensemble's first member, ``epochs`` budget),
    the ensemble, what the ensemble adds (paired by seed) and the ensemble's paired differences
    against the random and full ensembles."""
    ensembles = groups_of(records, "epochs", f"cnn_small_x{ENSEMBLE_MODELS}")
    if not ensembles:
        return ""
    singles = groups_of(records, "epochs", "cnn_small")
    lines = [
        f"Single model and ensemble of {ENSEMBLE_MODELS} subset models (the paper's metric), `epochs` budget: "
        "test accuracy %, mean ± sample sd (n seeds); paired differences in points [95% interval]",
        "| method | size | single model | ensemble | ensemble − single | ensemble − random ensemble | "
        "ensemble − full ensemble |",
        "|---|---|---|---|---|---|---|",
    ]
    full = {s: r["test_accuracy"] for s, r in ensembles.get(("full", 1.0), {}).items()}
    for (method, fraction), by_seed in sorted(ensembles.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ensemble = {s: r["test_accuracy"] for s, r in by_seed.items()}
        single = {s: r["test_accuracy"] for s, r in singles.get((method, fraction), {}).items() if s in ensemble}
        random = {s: r["test_accuracy"] for s, r in ensembles.get(("random", fraction), {}).items()}
        lines.append(
            f"| {method} | {100 * fraction:g}% | {text(mean_sd(list(single.values())), 100)} | "
            f"{text(mean_sd(list(ensemble.values())), 100)} | {difference(paired(ensemble, single))} | "
            f"{difference(paired(ensemble, random)) if method not in ('random', 'full') else ''} | "
            f"{difference(paired(ensemble, full)) if method != 'full' else ''} |"
        )
    return "\n".join(lines)


def report(records: list[dict]) -> str:
    parts = [convergence(records), "Test accuracy %, `epochs` budget:", headline(records)]
    for budget in ("epochs", "converge"):
        if groups_of(records, budget, "cnn_small"):
            parts += [table(records, budget), verdicts(records, budget), goals(records, budget)]
    parts.append(beside(records))
    parts.append(table(records, "epochs", f"cnn_small_x{ENSEMBLE_MODELS}"))  # its comparisons: beside()
    for learner in ("resnet10", "logistic"):
        parts += [table(records, "epochs", learner), verdicts(records, "epochs", learner)]
    return "\n\n".join(p for p in parts if p)


#: The lines of peers.md between which ``--replot`` writes the tables.
BEGIN, END = "<!-- tables: benchmarks/peers.py --replot -->", "<!-- end of tables -->"


def write_tables(records: list[dict], page: Path) -> None:
    text = page.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{page} lacks the markers {BEGIN} ... {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with atomic_path(page) as tmp:
        tmp.write_text(f"{head}{BEGIN}\n\n{report(records)}\n\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--quick", action="store_true", help="6,000-image pool, 3 epochs, 1 seed: a smoke run")
    parser.add_argument("--replot", action="store_true", help="tables and PNG from the JSON")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or (RESULTS.with_name("peers_quick.json") if args.quick else RESULTS)
    records = load_records(out)
    if args.replot:
        plot(records, out.with_suffix(".png"))
        if out == RESULTS:
            write_tables(records, ROOT / "peers.md")
        print(report(records))
        return
    work = ROOT / ".data" / ("peers_quick" if args.quick else "peers")
    bench = prepare(work, args.quick)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:.0f} s] {message}", flush=True)

    meta = out.with_name(out.stem + "_run.json")
    seeds = range(1 if args.quick else args.seeds)
    # the epochs budget for every seed first (the headline table), then seed by seed the other three
    # phases, so that each part of the benchmark has a result long before the last seed finishes
    order = [(PHASES[0], s) for s in seeds] + [(p, s) for s in seeds for p in PHASES[1:]]
    for phase, seed in order:
        measure_seed(bench, seed, records, out, log, phase)
        plot(records, out.with_suffix(".png"))
        with atomic_path(meta) as tmp:
            tmp.write_text(
                json.dumps(
                    {
                        "command": "python benchmarks/peers.py" + (" --quick" if args.quick else ""),
                        "machine": f"{platform.processor() or platform.machine()}, 2 threads",
                        "pool": len(bench.pool_y),
                        "last_done": {"phase": phase, "seed": seed},
                    },
                    indent=1,
                )
                + "\n"
            )
    print(report(records))


if __name__ == "__main__":
    main()
