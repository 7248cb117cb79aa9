"""subsetsearch against the scores users would pick instead, on all of Fashion-MNIST, with fair budgets.

    .venv/bin/python benchmarks/peers.py                          # every part; resumes; hours on 2 cores
    .venv/bin/python benchmarks/peers.py --phases epochs          # some parts (epochs, converge, ensemble, transfer)
    .venv/bin/python benchmarks/peers.py --quick                  # 6,000-image pool, 3 epochs: a smoke run
    .venv/bin/python benchmarks/peers.py --replot                 # tables and PNG from the JSON

Data: Fashion-MNIST's 60,000 training images. 5,000 of them (stratified, fixed) are the
validation set that the patience schedule, the convergence curve and every choice need; the other
55,000 are the pool every method chooses from. The 10,000 test images judge. Every subset model is
cnn_small (width 16, SGD, batch 128, lr 0.1, flips) trained by ``subsetsearch.train.trainer`` from
the same seed for every method of a seed, under two budgets:

- ``epochs``: the full model's schedule, 10 epochs, lr x0.1 after epochs 5 and 8 (the paper's
  ImageNet protocol: the saving is the fewer steps);
- ``converge``: the patience schedule (x0.1 after 2 epochs without a validation gain, stop 4 epochs
  after a drop that brought none), capped at 60 / fraction epochs so that the cap does not bind
  (the paper's CIFAR protocol); every record says whether patience or the cap stopped it.

Methods, at 25% and 50% of the pool (80% for build-up, random and full):

- ``build_up/mutual_information``, ``build_up/variation_ratios``: ``subsetsearch run`` with a random
  start of S/16 (50%) or S/8 (25%, 80%) and doubling: budgets 3.125, 6.25, 12.5, 25, 50% and
  10, 20, 40, 80%; each step an ensemble of the checkpoints of epochs 6-10 of one run on the subset;
- ``build_up_seeds/mutual_information``: build-up at full strength, the paper's ensemble (the last
  epoch of each of 4 runs) and its start S/8 for every size, three acquisitions to it;
- ``compress/mutual_information``: ``subsetsearch run``, the same ensemble trained on the whole pool;
- ``el2n``, ``forgetting``, ``dyn_unc``, ``variability``: from the checkpoints of the full model's own
  run (``epochs`` budget), so they cost one scoring pass: EL2N from epochs 1-2 (Paul et al.
  score early, at 10% of training), the others from every epoch 1-10 (forgetting over training;
  Dyn-Unc over training with a window J = 5: He et al.'s J = 10 over 10 checkpoints would be one
  window, the same as variability; cartography over training);
- ``el2n_x10``: EL2N at full strength, averaged over 10 initialisations (the full run and 9 runs of
  two epochs);
- the same four ``@train``: zero-cost members, the outputs the full model gave on its own training
  batches (``PoolScorer(members="train")``), no inference pass;
- ``random``, and ``full``;
- the balanced and coverage variants of benchmarks/selection_options.py (same protocol and seeds),
  read from its results: candidates for the build-up variant chosen on validation.

Seeds: 10 (0-9) for the methods of TEN_SEED_METHODS and full at 25% and 50% on the ``epochs`` budget,
5 (0-4) for everything else. The build-up variant the verdicts and goals are about is chosen per
size on the validation set (:func:`chosen_variant`); statistics: paired 95% intervals, Holm's
correction within each table, non-inferiority to full with a 0.5-point margin.

Records (benchmarks/results/peers.json): method, fraction, seed, budget, learner, test_accuracy,
train_seconds, search_seconds, unique_samples, epochs_trained (and for ``converge`` stopped and
cap_epochs). Costs are reported two ways: from scratch (the full run included where a method reads
it) and given that run. The selections are kept per seed as packed masks in
benchmarks/results/peers_subsets/ (with the recorded parts of their search seconds) so a later
session resumes without re-searching, and, for seed 0 at 50%, as .npy of Fashion-MNIST
training-set rows in benchmarks/results/subsets/. Transfer (the paper's Table V): the 50% and 80%
subsets of every method trained with resnet10 (width 8, 6 epochs) and with a logistic regression on
the pixels (C = 0.1), and the ten-seed methods' 50% subsets with a class-balanced logistic regression
whose C is chosen on the validation set. Ensembles of subset models (the paper's metric): 3 models
for build-up, random and full, epochs budget. Everything resumes: a record in the JSON is never
recomputed; the wall seconds of each finished part are in peers_run.json.
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
from summary_stats import difference, holm_adjusted, mean_sd, noninferiority_p, p_value, paired, text

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
LARGE_METHODS = (
    "build_up/mutual_information",
    "build_up/variation_ratios",
    "build_up_seeds/mutual_information",
    "random",
)
PEERS = ("el2n", "forgetting", "dyn_unc", "variability")
BUILD_UP = ("mutual_information", "variation_ratios")
PATHS = {"a": (0.03125, 0.0625, 0.125, 0.25, 0.5), "b": (0.1, 0.2, 0.4, 0.8)}
ENSEMBLE = {"kind": "checkpoints", "start": 6, "stop": 10, "step": 1}
#: Build-up at full strength (``build_up_seeds/…``): the paper's kind of ensemble, the last epoch of
#: each of 4 runs (its ImageNet count; without a validation set in the run, a run's last epoch is
#: its best), and the paper's start S/8 for every final size S, three acquisitions to it.
SEEDS_ENSEMBLE = {"kind": "seeds", "runs": 4}
S8_PATHS = {0.25: (0.03125, 0.0625, 0.125, 0.25), 0.5: (0.0625, 0.125, 0.25, 0.5), 0.8: (0.1, 0.2, 0.4, 0.8)}
#: EL2N at full strength (``el2n_x10``): averaged over 10 initialisations (Paul et al. average
#: about ten), each scored at epochs 1-2 as ``el2n`` is; the full model's own run is the first.
EL2N_INITS = 10
ENSEMBLE_MODELS = 3
#: Seeds of every method; the methods of :data:`TEN_SEED_METHODS` (and full) get
#: :data:`TEN_SEEDS` at 25% and 50% on the ``epochs`` budget.
SEEDS = 5
TEN_SEEDS = 10
TEN_SEED_METHODS = (
    "build_up/mutual_information",
    "build_up/variation_ratios",
    "build_up_seeds/mutual_information",
    "el2n@train",
    "dyn_unc@train",
    "variability@train",
    "random",
)
TRANSFER_FRACTIONS = (0.5, 0.8)
TRANSFER_EPOCHS = 6
TRANSFER_WIDTH = 8
#: Dyn-Unc's window over the 10 checkpoints: J = 10 would be one window, i.e. variability.
DYN_UNC_WINDOW = 5
#: The ``converge`` budget's cap, in epochs over the whole pool: CONVERGE_CAP * EPOCHS / fraction
#: epochs of the subset (60 for the full model). It was 2 (20 for the full model) until the full
#: model hit it in every seed; a run that stopped on patience below the old cap is the same run
#: under the new one (the schedule never reads the cap), so only the capped records are retrained.
CONVERGE_CAP = 6
OLD_CONVERGE_CAP = 2


def peer_epochs(function: str, epochs: int) -> list[int]:
    """The full run's checkpoints a peer score reads: EL2N early, the others over training."""
    if function == "el2n":
        return list(range(1, max(1, round(0.2 * epochs)) + 1))
    return list(range(1, epochs + 1))


def methods(seed: int = 0) -> list[str]:
    """The methods measured at ``seed``: all of them below :data:`SEEDS`, then the ten-seed set."""
    out = [f"build_up/{f}" for f in BUILD_UP] + list(NEW_METHODS)
    out += ["compress/mutual_information", *PEERS, "el2n_x10", *(f"{p}@train" for p in PEERS), "random"]
    return out if seed < SEEDS else [m for m in out if m in TEN_SEED_METHODS]


def fractions_of(method: str, seed: int = 0) -> tuple[float, ...]:
    if seed >= SEEDS:
        return FRACTIONS
    return (*FRACTIONS, LARGE) if method in LARGE_METHODS else FRACTIONS


def wanted(seed: int, records: list[dict] | None = None, budget: str = "epochs") -> list[tuple[str, float]]:
    """The (method, fraction) pairs measured at ``seed`` on ``budget``: :func:`methods` at
    :func:`fractions_of`, and the build-up variant chosen on validation where it is not among them
    (``records`` given). The ``converge`` budget takes the :data:`NEW_METHODS` only where chosen."""
    pairs = [(m, f) for m in methods(seed) for f in fractions_of(m, seed)]
    if budget == "converge":
        pairs = [(m, f) for m, f in pairs if m not in NEW_METHODS]
    if records is not None:
        for fraction in sorted({f for _, f in pairs}):
            choice = chosen_variant(records, fraction)
            if choice is not None and (choice, fraction) not in pairs:
                pairs.append((choice, fraction))
    return pairs


def reads_full_run(method: str) -> bool:
    """Whether a method's scores come from the full model's run (the peers, with their variants:
    ``dyn_unc@train/coverage``), so that from scratch it costs that run too."""
    return method.split("@")[0] in (*PEERS, "el2n_x10")


#: Build-up at full strength, measured first on seeds 0-4 and in the converge budget only where the
#: choice on validation picks it: mutual information only (the paper's headline function), which
#: keeps the whole run near its budget of about 8 hours.
NEW_METHODS = ("build_up_seeds/mutual_information",)
#: The balanced and coverage variants (benchmarks/selection_options.py, the same protocol and seeds,
#: K and beta chosen there on seed 0's validation accuracy): candidates for the choice below.
OPTIONS_RESULTS = ROOT / "results" / "selection_options.json"


def option_variants() -> dict[tuple[str, float], dict]:
    """The build-up variants of the selection-options benchmark: (method, fraction) -> options."""
    out = {}
    for r in load_records(OPTIONS_RESULTS):
        if r["method"].startswith("build_up/") and not r.get("grid") and r.get("options"):
            out[(r["method"], r["fraction"])] = r["options"]
    return out


def options_tag(options: dict) -> str:
    """A folder name's part for a variant's options: ``-balance_class-coverage_20_0.1``."""
    return "".join(
        f"-{k}_{v['strata']}_{v['prune_hardest']:g}" if k == "coverage" else f"-{k}_{v}"
        for k, v in sorted(options.items())
    )


def all_records(records: list[dict]) -> list[dict]:
    """This benchmark's records and the selection-options benchmark's chosen variants (not its grid
    points, nor its random records, which repeat ours), cnn_small's with their final validation
    accuracy as ``validation_curve`` like ours, the transfer learners' as they are."""
    extra = []
    for r in load_records(OPTIONS_RESULTS):
        if r.get("grid") or r["method"] == "random":
            continue
        extra.append({**r, "validation_curve": [r["val_accuracy"]]} if "val_accuracy" in r else r)
    mine = {key(r) for r in records}
    return records + [r for r in extra if key(r) not in mine]


def build_up_variants(records: list[dict], fraction: float) -> list[str]:
    return sorted(
        {
            r["method"]
            for r in records
            if r["fraction"] == fraction and r["method"].startswith(("build_up/", "build_up_seeds/"))
        }
    )


#: The seeds on which the variant is chosen: those every candidate has.
CHOICE_SEEDS = tuple(range(SEEDS))


def chosen_variant(records: list[dict], fraction: float) -> str | None:
    """The build-up variant of best mean validation accuracy (its subset model's last epoch, ``epochs``
    budget, seeds :data:`CHOICE_SEEDS`) at ``fraction``, among every variant measured there (today's,
    full strength, balanced, coverage); None until every candidate has those seeds."""
    merged = all_records(records)
    groups = groups_of(merged, "epochs", "cnn_small")
    candidates = build_up_variants(merged, fraction)
    expected = {m for m in methods() if m.startswith("build_up") and fraction in fractions_of(m)}
    expected |= {m for m, f in option_variants() if f == fraction}
    if not expected <= set(candidates):
        return None
    means = {}
    for method in candidates:
        by_seed = groups.get((method, fraction), {})
        if any(s not in by_seed for s in CHOICE_SEEDS):
            return None
        means[method] = float(np.mean([by_seed[s]["validation_curve"][-1] for s in CHOICE_SEEDS]))
    return max(sorted(means), key=lambda m: means[m]) if means else None


def stop_reason(history: list[dict], config) -> str:
    """How a ``converge`` run ended: ``patience`` (its schedule stopped it) or ``cap``."""
    from subsetsearch.train.trainer import stopped_on_patience

    if stopped_on_patience(history, config):
        return "patience"
    if len(history) != config.epochs:
        raise RuntimeError(f"a run of {len(history)} epochs neither stopped on patience nor reached {config.epochs}")
    return "cap"


def migrate_converge(records: list[dict], epochs: int = EPOCHS) -> int:
    """Give every ``converge`` record of the old cap its stop reason: one that stopped on patience is
    kept (the same run under the new cap), one that hit the old cap moves to the budget
    ``converge_capped`` (kept for reference; the new cap retrains it). Returns how many moved."""
    from subsetsearch.train.trainer import stopped_on_patience

    moved = 0
    for r in records:
        if r["budget"] != "converge" or "stopped" in r:
            continue
        config = subset_config(epochs, "converge", r["fraction"])
        history = [{"epoch": i + 1, "val_accuracy": v} for i, v in enumerate(r["validation_curve"])]
        old = converge_cap(epochs, r["fraction"], OLD_CONVERGE_CAP)
        if r["epochs_trained"] > old:
            raise SystemExit(f"{key(r)}: {r['epochs_trained']} epochs, past the old cap {old}")
        if stopped_on_patience(history, config):
            r.update(stopped="patience", cap_epochs=old)
        else:
            r.update(budget="converge_capped", stopped="cap", cap_epochs=old)
            moved += 1
    return moved


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
    return subset_config(epochs or bench.epochs, budget, fraction)


def subset_config(epochs: int, budget: str, fraction: float):
    """A subset model's training: ``epochs`` with milestones, or the patience schedule capped."""
    from subsetsearch.train.settings import AugmentConfig, PatienceSchedule, TrainConfig

    common = {"batch_size": 128, "augment": AugmentConfig(crop_padding=0, flip=True), "threads": 2, "device": "cpu"}
    if budget == "epochs":
        return TrainConfig(epochs=epochs, **common)
    return TrainConfig(
        epochs=converge_cap(epochs, fraction), schedule=PatienceSchedule(kind="patience", patience=2), **common
    )


def converge_cap(epochs: int, fraction: float, factor: int = CONVERGE_CAP) -> int:
    """The ``converge`` budget's cap on a subset's epochs: ``factor`` full-pool schedules' worth of steps."""
    return math.ceil(factor * epochs / fraction)


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


def el2n_inits(bench: Bench, seed: int, folder: Path) -> tuple[np.ndarray, dict[str, float]]:
    """EL2N at full strength: the mean over :data:`EL2N_INITS` initialisations of EL2N at the epochs
    ``el2n`` reads (1-2), the full run in ``folder`` being the first and the others short runs of
    those epochs from seeds of their own, at the full run's lr for them (0.1: its first drop comes
    later). Returns the scores and the seconds: ``train`` (the short runs) and ``score`` (every
    checkpoint's inference and the statistics)."""
    from subsetsearch.dynamics import TrainingDynamics
    from subsetsearch.train import trainer
    from subsetsearch.train.settings import TrainConfig

    epochs = peer_epochs("el2n", bench.epochs)
    full_config = train_config(bench, "epochs", 1.0)
    if any(m <= max(epochs) for m in full_config.milestones()):
        raise SystemExit(f"the full run's lr drops at {full_config.milestones()}, inside EL2N's epochs {epochs}")
    short = TrainConfig(**{**full_config.model_dump(), "epochs": max(epochs), "schedule": {"milestones": []}})
    net_spec = network(bench, short)
    model = net_spec.build(0)
    dynamics = TrainingDynamics(bench.pool_y, num_classes=10, ordered=False)  # EL2N is order-free
    seconds = {"train": 0.0, "score": 0.0}
    for k in range(EL2N_INITS):
        run_folder = folder if k == 0 else folder.parent.parent / "el2n_inits" / f"init_{k}"
        if k:
            spec = trainer.TrainSpec(
                run_folder, np.arange(len(bench.pool_y)), seed=model_seed(seed, 100 + k), save_epochs=frozenset(epochs)
            )
            seconds["train"] += trainer.train_run(spec, net_spec, bench.pool).seconds
        for epoch in epochs:
            started = time.perf_counter()
            trainer.load_weights(model, run_folder / f"epoch_{epoch:03d}.safetensors")
            dynamics.update(trainer.predict(net_spec, model, bench.pool))
            seconds["score"] += time.perf_counter() - started
    started = time.perf_counter()
    scores = dynamics.scores("el2n")
    seconds["score"] += time.perf_counter() - started
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
    ensemble: dict | None = None,
) -> tuple[list, list[float]]:
    """The subsets of every step of a ``subsetsearch run`` on the benchmark's pool, and the search
    seconds spent up to each step. ``options`` are further ``search`` keys (balance, coverage) and
    ``ensemble`` another acquisition ensemble than :data:`ENSEMBLE`, in a run directory of their own
    named by ``tag``."""
    from subsetsearch.pipeline.config import parse_config
    from subsetsearch.pipeline.progress import Reporter
    from subsetsearch.pipeline.run import run_config
    from subsetsearch.rundir import SUBSET, Subset

    name = search_name(scheme, function, budgets, tag)
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
        "ensemble": ensemble or {**ENSEMBLE, **({"start": 2, "stop": 3} if bench.quick else {})},
        "search": {"scheme": scheme, "function": function, "budgets": list(budgets), **(options or {})},
        # the run's own subset model is not used (every subset model is trained below, alike): one epoch
        "subset_model": {"models": 1, "steps": "final", "train": {"epochs": 1, "threads": 2, "device": "cpu"}},
    }
    folder = search_folder(bench, seed, name)
    with Reporter() as reporter:
        run_config(parse_config(config, "peers benchmark"), folder, reporter)
    subsets = [Subset.read(d / SUBSET) for d in sorted(folder.glob("iter_*"))]
    # the search's seconds up to each step: its ensembles' training and scoring so far
    spent = np.cumsum([step["train"] + step["score"] for step in step_seconds(folder)])
    return subsets, [float(x) for x in spent]


def search_name(scheme: str, function: str, budgets: tuple[float, ...], tag: str = "") -> str:
    """The run directory's name of one search (the scheme, function, budgets and ``tag``)."""
    return f"{scheme}-{function}-{'-'.join(f'{b:g}' for b in budgets)}{tag}"


def search_folder(bench: Bench, seed: int, name: str) -> Path:
    return bench.work / f"seed{seed}" / name


def step_seconds(folder: Path) -> list[dict[str, float]]:
    """Each step of a finished run: the seconds of training its acquisition ensemble and of scoring."""
    steps = json.loads((folder / "metrics.json").read_text())["steps"]
    return [{"train": s.get("train_seconds", 0.0), "score": s.get("score_seconds", 0.0)} for s in steps]


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


def load_costs(path: Path) -> dict[str, dict[str, float]]:
    """The parts of a selection's search seconds, where one was recorded: ``full_pool_train`` (the
    compress ensemble's run over the whole pool), ``train`` and ``score`` (EL2N's extra runs)."""
    if not path.is_file():
        return {}
    with np.load(path) as data:
        return json.loads(str(data["meta"])).get("costs", {})


def save_selections(
    path: Path, selections: dict[str, tuple[np.ndarray, float]], pool: int, costs: dict | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    masks = {}
    for name, (rows, _) in selections.items():
        mask = np.zeros(pool, dtype=bool)
        mask[rows] = True
        masks[name] = np.packbits(mask)
    meta = {"pool": pool, "seconds": {name: s for name, (_, s) in selections.items()}}
    costs = {**load_costs(path), **(costs or {})}
    if costs:
        meta["costs"] = costs
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, meta=np.array(json.dumps(meta)), **masks)


def selection_name(method: str, fraction: float) -> str:
    return f"{method.replace('/', '~')}|{fraction:g}"


def make_selections(
    bench: Bench, seed: int, path: Path, log, pairs: list[tuple[str, float]]
) -> dict[str, tuple[np.ndarray, float]]:
    """Every (method, fraction) subset of one seed with its search seconds; saved after each method.

    The search seconds exclude the full model's run that the peers read (:func:`search_costs` adds it
    for the cost from scratch); compress's include its own run over the whole pool, whose seconds are
    kept apart (``costs``) for the cost given a full run."""
    selections = load_selections(path)
    n = len(bench.pool_y)
    wanted = pairs
    if all(selection_name(m, f) in selections for m, f in wanted) and (
        seed >= SEEDS or selection_name("compress/mutual_information", FRACTIONS[0]) in load_costs(path)
    ):
        return selections

    def keep(method: str, fraction: float, rows: np.ndarray, seconds: float, cost: dict | None = None) -> None:
        selections[selection_name(method, fraction)] = (np.sort(rows), seconds)
        save_selections(path, selections, n, {selection_name(method, fraction): cost} if cost else None)

    def missing(method: str, fractions: tuple[float, ...]) -> bool:
        return (method, fractions[0]) in wanted and any(selection_name(method, f) not in selections for f in fractions)

    order = np.random.default_rng([seed, 99]).permutation(n)
    for fraction in fractions_of("random", seed):
        if selection_name("random", fraction) not in selections:
            keep("random", fraction, order[: round(fraction * n)], 0.0)
    eval_peers = [p for p in PEERS if missing(p, FRACTIONS)]
    train_peers = [p for p in PEERS if missing(f"{p}@train", FRACTIONS)]
    if eval_peers or train_peers or missing("el2n_x10", FRACTIONS):
        full, inside = full_run(bench, seed)
        if eval_peers:
            scores, seconds = eval_pass_scores(bench, full["folder"])
            for function in eval_peers:
                for fraction in FRACTIONS:
                    keep(function, fraction, select_top(scores[function], round(fraction * n), seed), seconds[function])
        for function in train_peers:
            name = "early" if function == "el2n" else "all"
            train_scores = full["scorers"][name].dynamics.scores(function)
            for fraction in FRACTIONS:
                keep(f"{function}@train", fraction, select_top(train_scores, round(fraction * n), seed), inside[name])
        log(f"seed {seed}: peers selected ({', '.join(eval_peers + [p + '@train' for p in train_peers])})")
        if missing("el2n_x10", FRACTIONS):
            scores, parts = el2n_inits(bench, seed, full["folder"])
            for fraction in FRACTIONS:
                rows = select_top(scores, round(fraction * n), seed)
                keep("el2n_x10", fraction, rows, parts["train"] + parts["score"], parts)
            log(f"seed {seed}: el2n_x10 selected ({parts})")
    for function in BUILD_UP:
        method = f"build_up/{function}"
        for path_name, budgets in PATHS.items():
            targets = tuple(t for t in ((0.25, 0.5) if path_name == "a" else (LARGE,)) if (method, t) in wanted)
            if not targets or all(selection_name(method, t) in selections for t in targets):
                continue
            subsets, spent = run_search(bench, seed, "build_up", function, budgets)
            for subset, budget, seconds in zip(subsets, budgets, spent, strict=True):
                if budget in targets:
                    keep(method, budget, subset.index, seconds)
            log(f"seed {seed}: {method} path {budgets} done ({spent[-1]:.0f} s)")
        method = f"build_up_seeds/{function}"
        for fraction in fractions_of(method, seed) if method in NEW_METHODS else ():
            if (method, fraction) not in wanted or selection_name(method, fraction) in selections:
                continue
            ensemble = {"kind": "seeds", "runs": 2} if bench.quick else SEEDS_ENSEMBLE
            subsets, spent = run_search(
                bench, seed, "build_up", function, S8_PATHS[fraction], tag="-seeds", ensemble=ensemble
            )
            keep(method, fraction, subsets[-1].index, spent[-1])
            log(f"seed {seed}: {method} {fraction:g} ({S8_PATHS[fraction]}) done ({spent[-1]:.0f} s)")
    variants = option_variants()
    for method, fraction in wanted:
        if (method, fraction) not in variants or selection_name(method, fraction) in selections:
            continue
        options = variants[(method, fraction)]
        function = method.split("/")[1]
        subsets, spent = run_search(
            bench, seed, "build_up", function, PATHS["a"], options=options, tag=options_tag(options)
        )
        step = PATHS["a"].index(fraction)
        keep(method, fraction, subsets[step].index, spent[step])
        log(f"seed {seed}: {method} {fraction:g} {options} done ({spent[step]:.0f} s)")
    method = "compress/mutual_information"
    if (method, FRACTIONS[0]) in wanted and (
        missing(method, FRACTIONS) or selection_name(method, FRACTIONS[0]) not in load_costs(path)
    ):
        # a compress selection committed before its cost was split is searched again: the same
        # deterministic run, which must choose the committed subsets again
        committed = {f: selections.get(selection_name(method, f)) for f in FRACTIONS}
        subsets, spent = run_search(bench, seed, "compress", "mutual_information", FRACTIONS)
        steps = step_seconds(search_folder(bench, seed, search_name("compress", "mutual_information", FRACTIONS)))
        # one ensemble (one run over the whole pool) and one scoring for both sizes
        cost = {"full_pool_train": sum(x["train"] for x in steps), "score": sum(x["score"] for x in steps)}
        for subset, fraction in zip(subsets, FRACTIONS, strict=True):
            before = committed[fraction]
            if before is None:
                keep(method, fraction, subset.index, spent[-1], cost)
                continue
            # the committed subset stays (its models are trained); the rerun gives the cost's parts
            cost = {**cost, "reproduced": bool(np.array_equal(before[0], np.sort(subset.index)))}
            keep(method, fraction, before[0], before[1], cost)
            if not cost["reproduced"]:
                log(f"seed {seed}: WARNING compress at {fraction:g} chose another subset than the committed one")
        log(f"seed {seed}: {method} done ({cost})")
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


#: The inverse regularisation strengths the class-balanced logistic regression chooses from on the
#: validation set, smallest first (each fit starts from the previous one's solution). Fixed before the
#: run from one pilot on a random half of the pool (validation accuracy 84.2 / 86.1 / 85.0 / 83.7% at
#: C = 0.001 / 0.01 / 0.1 / 1): the grid brackets the best and leaves out C = 1, the slowest fit.
LOGISTIC_GRID = (0.001, 0.01, 0.1)
#: The subsets the class-balanced logistic regression is measured on (its C choice costs about three
#: fits each): the 50% subsets of the ten-seed methods, and full.
BALANCED_LOGISTIC_METHODS = (*TEN_SEED_METHODS, "full")
BALANCED_LOGISTIC_FRACTIONS = (0.5, 1.0)


def transfer_linear_balanced(bench: Bench, rows: np.ndarray) -> tuple[float, float, dict]:
    """A logistic regression on the normalised pixels with class-balanced weights (each class weighs
    as much in the loss whatever its share of the subset: a prior correction for a class-skewed
    subset against the balanced test set), its C chosen from :data:`LOGISTIC_GRID` on the validation
    set. Returns the test accuracy, the seconds of every fit (the choice included) and the choice."""
    import torch
    from sklearn.linear_model import LogisticRegression

    def features(x) -> np.ndarray:
        return ((x.float() - bench.pool.mean) / bench.pool.std).reshape(len(x), -1).numpy()

    x, y = features(bench.pool.x[torch.as_tensor(rows)]), bench.pool_y[rows]
    validation_x, validation_y = features(bench.validation.x), bench.validation.y.cpu().numpy()
    started = time.perf_counter()
    model = LogisticRegression(max_iter=LOGISTIC_MAX_ITER, class_weight="balanced", warm_start=True)
    best, curve = None, {}
    for c in LOGISTIC_GRID:
        model.set_params(C=c)
        model.fit(x, y)
        if int(np.max(model.n_iter_)) >= LOGISTIC_MAX_ITER:
            raise SystemExit(f"logistic regression unconverged at C={c}: raise LOGISTIC_MAX_ITER")
        curve[c] = float(np.mean(model.predict(validation_x) == validation_y))
        if best is None or curve[c] > best[0]:
            best = (curve[c], c, model.coef_.copy(), model.intercept_.copy())
    seconds = time.perf_counter() - started
    _, chosen, model.coef_, model.intercept_ = best
    accuracy = float(np.mean(model.predict(features(bench.test.x)) == bench.test_y))
    return accuracy, seconds, {"C": chosen, "validation_by_C": {f"{c:g}": v for c, v in curve.items()}}


#: The parts of the work. ``main`` runs every seed's selections and ``epochs`` models first (the
#: paired comparisons need seeds more than they need the rest), then, one seed at a time, the
#: patience budget, the ensembles of subset models and transfer.
PHASES = ("epochs", "converge", "ensemble", "transfer")


def measure_seed(bench: Bench, seed: int, records: list[dict], out: Path, log, phase: str) -> None:
    from subsetsearch.train import trainer

    done = {key(r) for r in all_records(records)}
    pairs = wanted(seed, records, phase)
    selections = make_selections(bench, seed, selection_path(seed, bench.quick), log, pairs)
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
        jobs = [("full", 1.0, np.arange(n), 0.0)] + [(m, f, *selections[selection_name(m, f)]) for m, f in pairs]
        for method, fraction, rows, search_seconds in jobs:
            record_key = (method, fraction, seed, budget, "cnn_small")
            if record_key in done:
                continue
            folder = base / budget / selection_name(method, fraction).replace("|", "_") / "model_0"
            if method == "full" and budget == "epochs":
                folder = bench.work / f"seed{seed}" / "full_epochs" / "model_0"  # the peers' own run
            config = train_config(bench, budget, fraction)
            probs, record = train_subset(bench, rows, seed=seed, budget=budget, fraction=fraction, folder=folder)
            extra = {}
            if budget == "converge":
                extra = {"cap_epochs": config.epochs, "stopped": stop_reason(record.history, config)}
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
                    **extra,
                }
            )
            log(f"seed {seed} {budget} {method} {fraction:g}: {100 * add_last(records):.2f}% {extra or ''}")
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
    # the pairs whose selections were made above for this seed (the ten-seed methods past seed 4 have
    # no 80% subset)
    jobs = [("full", 1.0, np.arange(n), 0.0)] + [
        (m, f, *selections[selection_name(m, f)]) for m, f in pairs if f in TRANSFER_FRACTIONS
    ]
    for learner in ("logistic", "resnet10", "logistic_balanced") if phase == "transfer" else ():
        for method, fraction, rows, search_seconds in jobs:
            if (method, fraction, seed, "epochs", learner) in done:
                continue
            if learner == "logistic_balanced" and (
                method not in BALANCED_LOGISTIC_METHODS or fraction not in BALANCED_LOGISTIC_FRACTIONS
            ):
                continue
            extra = {}
            if learner == "logistic":
                accuracy, seconds, extra["iterations"] = transfer_linear(bench, rows)
            elif learner == "logistic_balanced":
                accuracy, seconds, extra = transfer_linear_balanced(bench, rows)
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
    return tie_or_undecided(d)


def tie_or_undecided(d: dict) -> str:
    """'ties' when the raw 95% interval lies within ±:data:`TIE_POINTS`, else 'undecided'."""
    return "ties" if 100 * max(-d["ci95"][0], d["ci95"][1]) <= TIE_POINTS else "undecided"


def holm_verdict(d: dict, adjusted: float | None) -> str:
    """:func:`verdict` with a family's Holm-adjusted p-value in place of the raw interval's side:
    'wins' / 'loses' when it is below 0.05, else 'ties' (the raw interval within
    ±:data:`TIE_POINTS`) or 'undecided'."""
    if adjusted is None:
        return "n < 2"
    if adjusted < 0.05:
        return "wins" if d["mean"] > 0 else "loses"
    return tie_or_undecided(d)


#: Non-inferiority to full: the margin, in points, fixed before the 10-seed run.
NI_MARGIN = 0.5


def noninferior(adjusted: float | None) -> str:
    """The verdict of a Holm-adjusted one-sided non-inferiority p-value (level 2.5%, the 95%
    interval's lower end above -:data:`NI_MARGIN` before the adjustment)."""
    if adjusted is None:
        return "n < 2"
    return "non-inferior" if adjusted < 0.025 else "not shown"


def selection_costs(quick: bool = False) -> dict[tuple[int, str], dict[str, float]]:
    """(seed, selection name) -> the recorded parts of its search seconds (:func:`load_costs`)."""
    out = {}
    for seed in range(TEN_SEEDS):
        for name, cost in load_costs(selection_path(seed, quick)).items():
            out[(seed, name)] = cost
    return out


def search_costs(record: dict, full_run: dict[int, float], costs: dict) -> tuple[float | None, float | None]:
    """A record's search seconds two ways: from scratch (the full model's run included where the
    method reads it) and given a full run the user has anyway (compress then only scores: its
    ensemble is that run's checkpoints). None where a needed part was not recorded."""
    method, seed = record["method"], record["seed"]
    search = record["search_seconds"]
    scratch = search
    if reads_full_run(method):
        scratch = search + full_run[seed] if seed in full_run else None
    given = search
    if method.startswith("compress/"):
        cost = costs.get((seed, selection_name(method, record["fraction"])))
        given = cost["score"] if cost else None
    return scratch, given


def reuses(method: str, search: float | None, train: float, full: float) -> str:
    """A table cell of :func:`break_even` (blank for full, "-" without a search cost or a full model)."""
    if method == "full":
        return ""
    return "-" if search is None or math.isnan(full) else break_even(search, train, full)


def table(records: list[dict], budget: str, learner: str = "cnn_small", costs: dict | None = None) -> str:
    groups = groups_of(records, budget, learner)
    if not groups:
        return ""
    costs = selection_costs() if costs is None else costs
    full = {s: r["test_accuracy"] for s, r in groups.get(("full", 1.0), {}).items()}
    full_train = {s: r["train_seconds"] for s, r in groups.get(("full", 1.0), {}).items()}
    full_run = {
        s: r["train_seconds"]
        for (m, _), by in groups_of(records, "epochs", "cnn_small").items()
        if m == "full"
        for s, r in by.items()
    }
    lines = [
        f"budget {budget}, learner {learner}: test accuracy %, mean ± sample sd (n seeds); paired differences "
        "(points, mean [95% interval], unadjusted); seconds (means over the row's seeds, full's too: the "
        "machine's speed differs between sessions, not within a seed): search from scratch (the full "
        "model's run included where the method reads it) and given that run; training the subset model; "
        "reuses to break even both ways",
        "| method | size | accuracy | − random | − full | search s: scratch | given full run | train s | "
        "full s | break-even: scratch | given full run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def mean_of(values: list[float | None]) -> float | None:
        return None if not values or any(v is None for v in values) else float(np.mean(values))

    for (method, fraction), by_seed in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        accuracy = {s: r["test_accuracy"] for s, r in by_seed.items()}
        random = {s: r["test_accuracy"] for s, r in groups.get(("random", fraction), {}).items()}
        two = [search_costs(r, full_run, costs) for r in by_seed.values()]
        scratch, given = mean_of([t[0] for t in two]), mean_of([t[1] for t in two])
        train = float(np.mean([r["train_seconds"] for r in by_seed.values()]))
        same = [full_train[s] for s in by_seed if s in full_train]
        full_seconds = float(np.mean(same)) if same else math.nan

        lines.append(
            f"| {method} | {100 * fraction:g}% | {text(mean_sd(list(accuracy.values())), 100)} | "
            f"{difference(paired(accuracy, random)) if method != 'random' else ''} | "
            f"{difference(paired(accuracy, full)) if method != 'full' else ''} | "
            f"{'-' if scratch is None else f'{scratch:.0f}'} | {'-' if given is None else f'{given:.0f}'} | "
            f"{train:.0f} | {full_seconds:.0f} | {reuses(method, scratch, train, full_seconds)} | "
            f"{reuses(method, given, train, full_seconds)} |"
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
    variants = sorted({m for m, _ in option_variants()})
    for method in [*methods(), *variants, "full"]:
        cells = []
        for fraction in sizes:
            by_seed = groups.get((method, fraction), {})
            cells.append(text(mean_sd([r["test_accuracy"] for r in by_seed.values()]), 100) if by_seed else "")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chosen_by_size(records: list[dict]) -> dict[float, str | None]:
    """:func:`chosen_variant` at every size (None where it cannot be made yet)."""
    return {f: chosen_variant(records, f) for f in (*FRACTIONS, LARGE)}


def ours_by_size(chosen: dict[float, str | None]) -> dict[float, str]:
    """The build-up variant each size's verdicts and goals are about: the one chosen on validation,
    or mutual information until the choice can be made."""
    return {f: method or "build_up/mutual_information" for f, method in chosen.items()}


def noninferiority_rows(
    mine: dict[float, dict[int, float]], full: dict[int, float]
) -> list[tuple[float, dict, float | None]]:
    """The non-inferiority family: ours against full at 50% and 80%, paired by seed, each with its
    one-sided p-value (margin :data:`NI_MARGIN`) after Holm's correction over the two."""
    rows = [(f, paired(mine.get(f, {}), full)) for f in (0.5, LARGE)]
    adjusted = holm_adjusted([noninferiority_p(d, NI_MARGIN / 100) for _, d in rows])
    return [(f, d, a) for (f, d), a in zip(rows, adjusted, strict=True)]


def verdicts(records: list[dict], budget: str, learner: str = "cnn_small") -> str:
    """Where the chosen build-up variant of each size wins, ties and loses against every other method
    of that size and against full, paired by seed: the raw 95% interval and p-value, and the verdict
    after Holm's correction over the whole table (the family). Against full at 50% and 80% also
    non-inferiority with margin :data:`NI_MARGIN`, Holm-corrected over those rows."""
    groups = groups_of(records, budget, learner)
    accuracy = {k: {s: r["test_accuracy"] for s, r in by_seed.items()} for k, by_seed in groups.items()}
    made = chosen_by_size(records)
    ours = ours_by_size(made)
    rows = []
    for method, fraction in sorted(accuracy, key=lambda k: (k[1], k[0])):
        mine = accuracy.get((ours.get(fraction), fraction))
        if mine is None or method == ours[fraction] or method.startswith(("build_up", "full")):
            continue
        rows.append((f"vs {method}", fraction, paired(mine, accuracy[(method, fraction)])))
    full = accuracy.get(("full", 1.0), {})
    for fraction in (*FRACTIONS, LARGE):
        mine = accuracy.get((ours[fraction], fraction))
        if mine is not None and full:
            rows.append(("vs full", fraction, paired(mine, full)))
    rows = [r for r in rows if r[2]["n"]]
    if not rows:
        return ""
    adjusted = holm_adjusted([p_value(d) for _, _, d in rows])
    mine = {f: accuracy[(ours[f], f)] for f in ours if (ours[f], f) in accuracy}
    ni_of = {f: a for f, d, a in noninferiority_rows(mine, full) if d["n"]}
    ni = {i: ni_of[f] for i, (name, f, _) in enumerate(rows) if name == "vs full" and f in ni_of}
    name = f"budget {budget}" if learner == "cnn_small" else f"learner {learner}"
    chosen = ", ".join(
        f"{100 * f:g}%: {m}{'' if made[f] else ' (the choice is not made yet)'}" for f, m in ours.items()
    )
    lines = [
        f"{name}; ours is the build-up variant chosen on validation ({chosen}). Family for Holm: the "
        f"{len(rows)} rows of this table; non-inferiority (margin {NI_MARGIN} points, one-sided 2.5%): "
        "the rows against full at 50% and 80%",
        "| ours | vs | size | difference (points) [95% interval] | p | Holm p | verdict (Holm) | "
        "non-inferiority Holm p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, (versus, fraction, d) in enumerate(rows):
        p = p_value(d)
        lines.append(
            f"| {ours[fraction]} | {versus[3:]} | {100 * fraction:g}% | {difference(d)} (n={d['n']}) | "
            f"{p_text(p)} | {p_text(adjusted[i])} | {holm_verdict(d, adjusted[i])} | "
            f"{f'{p_text(ni[i])}: {noninferior(ni[i])}' if i in ni else ''} |"
        )
    return "\n".join(lines)


def p_text(p: float | None) -> str:
    return "-" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"


def goal_peers(methods_here: set[str]) -> list[str]:
    """The peers of the goal "ahead of every peer": every score users know that was measured, at
    full strength (``el2n_x10``) and with coverage too (the methods that read the full model's
    run); not build-up, compress, random or full."""
    return sorted(m for m in methods_here if reads_full_run(m))


def goals(records: list[dict], budget: str) -> str:
    """The goals, met or not (or not measured), for one budget: the chosen build-up variant
    ahead of every peer at 25% and 50% (Holm over those comparisons, 5%), and non-inferior to full
    at 50% and 80% (margin :data:`NI_MARGIN`; Holm over the two, one-sided 2.5%)."""
    groups = groups_of(records, budget, "cnn_small")
    accuracy = {k: {s: r["test_accuracy"] for s, r in by_seed.items()} for k, by_seed in groups.items()}
    chosen = chosen_by_size(records)
    ours = ours_by_size(chosen)
    waiting = [f"{100 * f:g}%" for f, method in chosen.items() if method is None]
    lines = (
        [f"- (provisional: no variant can be chosen yet at {', '.join(waiting)}; mutual information stands in)"]
        if waiting
        else []
    )
    comparisons, missing = [], []
    for fraction in FRACTIONS:
        for peer in goal_peers({m for m, f in accuracy if f == fraction}):
            if (ours[fraction], fraction) not in accuracy or (peer, fraction) not in accuracy:
                missing.append(f"{peer if (peer, fraction) not in accuracy else ours[fraction]} {100 * fraction:g}%")
                continue
            comparisons.append(
                (peer, fraction, paired(accuracy[(ours[fraction], fraction)], accuracy[(peer, fraction)]))
            )
    goal = f"- the chosen build-up variant ahead of every peer at 25% and 50% ({budget})"
    if missing:
        lines.append(f"{goal}: **not measured** (no records yet: {', '.join(sorted(set(missing)))})")
    else:
        adjusted = holm_adjusted([p_value(d) for _, _, d in comparisons])
        behind = [
            f"{peer} {100 * fraction:g}% ({difference(d)}, Holm p {p_text(a)})"
            for (peer, fraction, d), a in zip(comparisons, adjusted, strict=True)
            if a is None or not (a < 0.05 and d["mean"] > 0)
        ]
        detail = f"; not ahead of: {'; '.join(behind)}" if behind else ""
        lines.append(f"{goal}: **{'not met' if behind else 'met'}** (Holm over {len(comparisons)}){detail}")
    mine = {f: accuracy.get((ours[f], f), {}) for f in ours}
    rows = noninferiority_rows(mine, accuracy.get(("full", 1.0), {}))
    goal = f"- the chosen build-up variant non-inferior to full at 50% and 80%, margin {NI_MARGIN} points ({budget})"
    if any(not d["n"] for _, d, _ in rows):
        lines.append(f"{goal}: **not measured**")
    else:
        parts = [
            f"{100 * f:g}% {ours[f]} {difference(d)} (n={d['n']}), Holm p {p_text(a)}: {noninferior(a)}"
            for f, d, a in rows
        ]
        met = all(a is not None and a < 0.025 for _, _, a in rows)
        lines.append(f"{goal}: **{'met' if met else 'not met'}** ({'; '.join(parts)})")
    return "\n".join(lines)


def caps(records: list[dict]) -> str:
    """The ``converge`` budget's stops: for every method and size, how many seeds stopped on patience
    and how many on the cap, the epochs trained and the cap (goal: no cap hit)."""
    groups = groups_of(records, "converge", "cnn_small")
    if not groups:
        return ""
    lines = [
        f"`converge` budget: how each run stopped (cap: {CONVERGE_CAP} × {EPOCHS} / fraction epochs; goal: no cap "
        f"hit). The cap column is the cap each run had: a run kept from the first run has the old cap, "
        f"{OLD_CONVERGE_CAP} × {EPOCHS} / fraction, and stopped below it on patience, so it is the same run "
        "under the new cap",
        "| method | size | stopped on patience | on the cap | not recorded | epochs trained (min–max) | "
        "cap of the runs |",
        "|---|---|---|---|---|---|---|",
    ]
    hits = 0
    for (method, fraction), by_seed in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        stops = [r.get("stopped") for r in by_seed.values()]
        epochs = [r["epochs_trained"] for r in by_seed.values()]
        hits += stops.count("cap")
        lines.append(
            f"| {method} | {100 * fraction:g}% | {stops.count('patience')} | {stops.count('cap')} | "
            f"{stops.count(None)} | {min(epochs)}–{max(epochs)} | "
            f"{', '.join(str(c) for c in sorted({r.get('cap_epochs') for r in by_seed.values()} - {None})) or '-'} |"
        )
    total = sum(len(v) for v in groups.values())
    capped = groups_of(records, "converge_capped", "cnn_small")
    pending = [
        f"{method} {100 * fraction:g}% seed {seed}"
        for (method, fraction), by_seed in sorted(capped.items())
        for seed in sorted(by_seed)
        if seed not in groups.get((method, fraction), {})
    ]
    state = "not measured" if pending else "met" if hits == 0 else "not met"
    lines.append("")
    lines.append(
        f"Cap hits: {hits} of {total} runs; {sum(len(v) for v in capped.values())} runs had hit the old "
        f"cap of {OLD_CONVERGE_CAP} × {EPOCHS} / fraction epochs and are retrained under this one"
        f"{f' ({len(pending)} not yet: ' + ', '.join(pending) + ')' if pending else ''}: goal **{state}**."
    )
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


#: The methods at full strength beside the same method as before: build-up (mutual information both)
#: with an ensemble of seeds from S/8, and EL2N over 10 initialisations.
STRENGTH_PAIRS = (
    ("build_up_seeds/mutual_information", "build_up/mutual_information"),
    ("el2n_x10", "el2n"),
)


def strength(records: list[dict]) -> str:
    """Each method at full strength against the same method as before (:data:`STRENGTH_PAIRS`): on
    each budget and size, the paired difference in test accuracy with its raw 95% interval, p and the
    verdict after Holm's correction over the table's rows, and each one's mean search seconds (given
    the full run, over the same seeds)."""
    rows = []
    for new, old in STRENGTH_PAIRS:
        for budget in ("epochs", "converge"):
            groups = groups_of(records, budget, "cnn_small")
            for fraction in (*FRACTIONS, LARGE):
                a, b = groups.get((new, fraction), {}), groups.get((old, fraction), {})
                d = paired({s: r["test_accuracy"] for s, r in a.items()}, {s: r["test_accuracy"] for s, r in b.items()})
                if d["n"]:
                    both = sorted(set(a) & set(b))
                    seconds = [float(np.mean([g[s]["search_seconds"] for s in both])) for g in (a, b)]
                    rows.append((new, old, budget, fraction, d, seconds))
    if not rows:
        return ""
    adjusted = holm_adjusted([p_value(row[4]) for row in rows])
    lines = [
        f"At full strength against as before: build-up with each step's ensemble the last epoch of "
        f"{SEEDS_ENSEMBLE['runs']} runs, from S/8 at every size, against the checkpoints of epochs "
        f"{ENSEMBLE['start']}–{ENSEMBLE['stop']} of one run, from S/8 at 25% and 80% and S/16 at 50%; "
        f"EL2N averaged over {EL2N_INITS} initialisations against one. Test accuracy, paired by seed; Holm "
        f"over the {len(rows)} rows; search seconds given the full run, means over the same seeds",
        "| full strength | as before | budget | size | difference (points) [95% interval] | p | Holm p | "
        "verdict (Holm) | search s: full strength | as before | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (new, old, budget, fraction, d, (slow, fast)), a in zip(rows, adjusted, strict=True):
        lines.append(
            f"| {new} | {old} | {budget} | {100 * fraction:g}% | {difference(d)} (n={d['n']}) | "
            f"{p_text(p_value(d))} | {p_text(a)} | {holm_verdict(d, a)} | {slow:.0f} | {fast:.0f} | "
            f"{slow / fast:.2f} |"
        )
    return "\n".join(lines)


def choice(records: list[dict]) -> str:
    """The choice of build-up variant on validation: every candidate's mean validation accuracy at
    each size (seeds :data:`CHOICE_SEEDS`, ``epochs`` budget) and the one chosen."""
    merged = all_records(records)
    groups = groups_of(merged, "epochs", "cnn_small")
    lines = [
        f"Build-up variant chosen on validation: mean validation accuracy % of the subset model (seeds "
        f"{CHOICE_SEEDS[0]}–{CHOICE_SEEDS[-1]}, `epochs` budget; the test set plays no part)",
        "| size | variant | validation accuracy | chosen |",
        "|---|---|---|---|",
    ]
    for fraction in (*FRACTIONS, LARGE):
        chosen = chosen_variant(records, fraction)
        for method in build_up_variants(merged, fraction):
            by_seed = groups.get((method, fraction), {})
            values = [by_seed[s]["validation_curve"][-1] for s in CHOICE_SEEDS if s in by_seed]
            mark = "**chosen**" if method == chosen else ""
            lines.append(f"| {100 * fraction:g}% | {method} | {text(mean_sd(values), 100)} | {mark} |")
    return "\n".join(lines)


def report(records: list[dict], quick: bool = False) -> str:
    records = all_records(records)
    costs = selection_costs(quick)
    parts = [
        convergence(records),
        caps(records),
        "Test accuracy %, `epochs` budget:",
        headline(records),
        choice(records),
        strength(records),
    ]
    for budget in ("epochs", "converge"):
        if groups_of(records, budget, "cnn_small"):
            parts += [table(records, budget, costs=costs), verdicts(records, budget), goals(records, budget)]
    parts.append(beside(records))
    parts.append(table(records, "epochs", f"cnn_small_x{ENSEMBLE_MODELS}", costs))  # its comparisons: beside()
    for learner in ("resnet10", "logistic", "logistic_balanced"):
        parts += [table(records, "epochs", learner, costs), verdicts(records, "epochs", learner)]
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


def wall_seconds(meta: Path, part: str, seconds: float) -> dict[str, float]:
    """The wall seconds of every part so far (``meta``'s, summed over interrupted attempts) with
    ``seconds`` more for ``part``; a part that found its work done adds its few seconds."""
    spent = json.loads(meta.read_text()).get("wall_seconds", {}) if meta.is_file() else {}
    return {**spent, part: round(spent.get(part, 0.0) + seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=TEN_SEEDS, help="seeds 0..N-1 (the ten-seed methods only past 5)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"some of {', '.join(PHASES)}")
    parser.add_argument("--quick", action="store_true", help="6,000-image pool, 3 epochs, 1 seed: a smoke run")
    parser.add_argument("--replot", action="store_true", help="tables and PNG from the JSON")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or (RESULTS.with_name("peers_quick.json") if args.quick else RESULTS)
    records = load_records(out)
    if args.replot:
        migrate_converge(records, 3 if args.quick else EPOCHS)  # in memory: the stop reasons of old records
        plot(records, out.with_suffix(".png"))
        if out == RESULTS:
            write_tables(records, ROOT / "peers.md")
        print(report(records, args.quick))
        return
    work = ROOT / ".data" / ("peers_quick" if args.quick else "peers")
    bench = prepare(work, args.quick)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:.0f} s] {message}", flush=True)

    meta = out.with_name(out.stem + "_run.json")
    phases = [p for p in args.phases.split(",") if p]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    seeds = range(1 if args.quick else args.seeds)
    moved = migrate_converge(records, bench.epochs)
    if moved:
        save_records(out, records)
        log(f"{moved} converge records hit the old cap: kept as converge_capped, retrained under the new cap")
    # the epochs budget for every seed first (the headline table), then seed by seed the other three
    # phases, so that each part of the benchmark has a result long before the last seed finishes;
    # past seed 4 only the epochs budget
    order = [("epochs", s) for s in seeds if "epochs" in phases]
    order += [(p, s) for s in seeds if s < SEEDS for p in PHASES[1:] if p in phases]
    for phase, seed in order:
        part_started = time.perf_counter()
        measure_seed(bench, seed, records, out, log, phase)
        plot(records, out.with_suffix(".png"))
        with atomic_path(meta) as tmp:
            tmp.write_text(
                json.dumps(
                    {
                        "command": "python benchmarks/peers.py" + (" --quick" if args.quick else ""),
                        "wall_seconds": wall_seconds(meta, f"{phase} seed {seed}", time.perf_counter() - part_started),
                        "machine": f"{platform.processor() or platform.machine()}, 2 threads",
                        "pool": len(bench.pool_y),
                        "last_done": {"phase": phase, "seed": seed},
                    },
                    indent=1,
                )
                + "\n"
            )
    print(report(records, args.quick))


if __name__ == "__main__":
    main()
