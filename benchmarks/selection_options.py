"""Balanced and coverage selection beside the plain highest-first rule, on the peers benchmark's protocol.

    .venv/bin/python benchmarks/selection_options.py             # 5 seeds; resumes; hours on 2 cores
    .venv/bin/python benchmarks/selection_options.py --seeds 2   # seeds 0 and 1
    .venv/bin/python benchmarks/selection_options.py --replot    # the tables from the JSON

The protocol is ``benchmarks/peers.py``'s, unchanged: all of Fashion-MNIST, the same 55,000-image
pool, 5,000-image validation set and 10,000 test images, cnn_small subset models under the
``epochs`` budget (10 epochs, the full model's schedule) from the same seed per seed. So the plain
methods' records are the peers benchmark's committed ones (``benchmarks/results/peers.json``),
paired by seed; the first part checks that pairing by retraining one of them here and requiring
the same accuracy to the bit.

Variants, at 25% and 50% of the pool:

- ``variability@train``, ``dyn_unc@train``, ``el2n@train`` (the three strongest peers, from the
  full model's own training batches) with ``coverage``;
- ``build_up/mutual_information`` and ``build_up/variation_ratios`` (``subsetsearch run``, the
  peers benchmark's path: a random start of S/16, doubling to 50%) with ``balance: class``, with
  ``coverage``, and with both.

Part ``transfer``: every variant's 50% subset (the size both benchmarks transfer at) to the peers
benchmark's two transfer learners, a ``resnet10`` (width 8, 6 epochs) and a logistic regression on
the pixels, paired with the peers benchmark's plain and random records of the same learner and seed
(its first step retrains the peers' random 50% of seed 0 with both and requires the committed
accuracies to the bit).

``coverage``'s K (strata) and beta (prune_hardest) are chosen once, on seed 0, from the grid
:data:`GRID` fixed before any run, by the validation accuracy of the subset model (never the test
accuracy), per (method, size); the other seeds use the chosen pair, and build-up with both
options the pair chosen for build-up with coverage alone. What choosing costs (every grid
point's search and subset model) is counted in the records (``choice_seconds``).

Records (benchmarks/results/selection_options.json): method, fraction, seed, budget, learner,
test_accuracy, val_accuracy, train_seconds, search_seconds, unique_samples, class_share_min and
class_share_max (of the subset, the pool's are 10% each), options, and ``grid: true`` for the
grid points of seed 0. Selections are kept per seed as packed masks in
benchmarks/results/selection_options_subsets/.
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
from summary_stats import difference, mean_sd, paired, text

from subsetsearch.internal.atomic import atomic_path
from subsetsearch.selection import Coverage, select

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "selection_options.json"
SELECTIONS = ROOT / "results" / "selection_options_subsets"
PAGE = ROOT / "selection_options.md"
#: coverage's (strata K, prune_hardest beta) candidates, fixed before the first run.
GRID = tuple((k, b) for k in (20, 50) for b in (0.0, 0.05, 0.1, 0.2))
FRACTIONS = (0.25, 0.5)
STRONG_PEERS = ("variability", "dyn_unc", "el2n")
BUILD_UP = ("mutual_information", "variation_ratios")
BUDGET, LEARNER = "epochs", "cnn_small"
#: The peers benchmark's transfer learners, and the one size both benchmarks measure them at.
TRANSFER_LEARNERS = ("logistic", "resnet10")
TRANSFER_FRACTION = 0.5
#: The random start and doubling of the peers benchmark's path "a", to 50%.
PATH = peers.PATHS["a"]


def _digest(rows: np.ndarray) -> str:
    """The SHA-256 of a subset's sorted rows (int64): the same subset, the same digest."""
    import hashlib

    return hashlib.sha256(np.sort(np.asarray(rows, dtype=np.int64)).tobytes()).hexdigest()


def class_range(labels: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
    shares = np.bincount(labels[rows], minlength=10) / len(rows)
    return float(shares.min()), float(shares.max())


def train(bench, rows: np.ndarray, seed: int, fraction: float, folder: Path) -> dict:
    """One cnn_small subset model under the epochs budget: test and validation accuracy, seconds."""
    from subsetsearch.train import trainer

    probs, record = peers.train_subset(bench, rows, seed=seed, budget=BUDGET, fraction=fraction, folder=folder)
    low, high = class_range(bench.pool_y, rows)
    return {
        "test_accuracy": trainer.accuracy(probs, bench.test_y),
        "val_accuracy": record.history[-1]["val_accuracy"],
        "train_seconds": record.seconds,
        "unique_samples": len(rows),
        "class_share_min": low,
        "class_share_max": high,
    }


class Work:
    """The records and selections so far, saved after every addition (an interrupted run loses one model)."""

    def __init__(self, bench, out: Path, log) -> None:
        self.bench, self.out, self.log = bench, out, log
        self.records = load_records(out)
        self.selections: dict[int, dict] = {}

    def record(
        self, method: str, fraction: float, seed: int, *, grid: bool = False, options: dict, learner: str = LEARNER
    ) -> dict | None:
        for r in self.records:
            if (r["method"], r["fraction"], r["seed"], bool(r.get("grid")), r.get("options"), r["learner"]) == (
                method, fraction, seed, grid, options, learner
            ):  # fmt: skip
                return r
        return None

    def add(self, record: dict) -> None:
        self.records.append(record)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        ordered = sorted(
            self.records,
            key=lambda r: (
                r["seed"],
                bool(r.get("grid")),
                r["learner"] != LEARNER,
                r["learner"],
                r["fraction"],
                r["method"],
            ),
        )
        with atomic_path(self.out) as tmp:
            tmp.write_text(json.dumps(ordered, indent=1) + "\n")

    def folder(
        self, seed: int, method: str, fraction: float, options: dict, *, prefix: str = "", suffix: str = ""
    ) -> Path:
        """Where a model of ``method``'s subset trains (resumable), under the seed's work folder."""
        name = f"{prefix}{method.replace('/', '~')}_{fraction:g}{peers.options_tag(options)}{suffix}"
        return self.bench.work / f"seed{seed}" / "models" / "options" / name / "model_0"

    def selection(self, seed: int) -> dict:
        if seed not in self.selections:
            self.selections[seed] = peers.load_selections(SELECTIONS / f"seed{seed}.npz")
        return self.selections[seed]

    def keep(self, seed: int, name: str, rows: np.ndarray, seconds: float) -> None:
        selections = self.selection(seed)
        selections[name] = (np.sort(rows), seconds)
        peers.save_selections(SELECTIONS / f"seed{seed}.npz", selections, len(self.bench.pool_y))

    def measure(
        self, method: str, fraction: float, seed: int, rows: np.ndarray, search_seconds: float, *, options: dict,
        grid: bool = False, choice_seconds: float = 0.0,
    ) -> dict:  # fmt: skip
        done = self.record(method, fraction, seed, grid=grid, options=options)
        if done is not None:
            return done
        point = None if grid else self.record(method, fraction, seed, grid=True, options=options)
        if point is not None:  # seed 0's chosen point: the same rows and seed, so the same model, trained already
            if point.get("rows_sha256", _digest(rows)) != _digest(rows):  # the first records of seed 0 kept none
                raise SystemExit(f"{method} {fraction:g}: the chosen point's rows differ from its grid record's")
            record = {k: v for k, v in point.items() if k != "grid"} | {
                "choice_seconds": choice_seconds,
                "rows_sha256": _digest(rows),
            }
            self.add(record)
            return record
        folder = self.folder(seed, method, fraction, options, prefix="grid_" if grid else "")
        result = train(self.bench, rows, seed, fraction, folder)
        record = {
            "method": method,
            "fraction": fraction,
            "seed": seed,
            "budget": BUDGET,
            "learner": LEARNER,
            **result,
            "search_seconds": search_seconds,
            "options": options,
            "rows_sha256": _digest(rows),
            **({"grid": True} if grid else {"choice_seconds": choice_seconds}),
        }
        self.add(record)
        self.log(
            f"seed {seed} {method} {fraction:g} {options}{' (grid)' if grid else ''}: "
            f"test {100 * record['test_accuracy']:.2f}%, validation {100 * record['val_accuracy']:.2f}%"
        )
        return record


def chosen_point(work: Work, method: str, fraction: float, base: dict | None = None) -> tuple[dict, float] | None:
    """The grid point of best validation accuracy on seed 0 (ties: the earlier in :data:`GRID`), and
    what the whole grid cost (its searches and subset models); None until every point is measured.
    ``base``: the options every point shares (``balance``)."""
    points = []
    for k, beta in GRID:
        r = work.record(method, fraction, 0, grid=True, options={**(base or {}), **coverage_options(k, beta)})
        if r is None:
            return None
        points.append(r)
    best = max(range(len(points)), key=lambda i: (points[i]["val_accuracy"], -i))
    return points[best]["options"], sum(r["search_seconds"] + r["train_seconds"] for r in points)


def coverage_options(strata: int, beta: float) -> dict:
    return {"coverage": {"strata": strata, "prune_hardest": beta}}


# ------------------------------------------------------------------ the parts
#: The options of the records that check the pairing with peers.json (not variants).
PAIRING = {"check": "pairing"}


def check_pairing(work: Work, learner: str = LEARNER, fraction: float = 0.25) -> None:
    """Retrain the peers benchmark's random subset of seed 0 at ``fraction`` with ``learner`` and
    require its committed accuracy to the bit (the records reused from peers.json pair with ours)."""
    committed = [
        r for r in peers.load_records(peers.RESULTS) if peers.key(r) == ("random", fraction, 0, BUDGET, learner)
    ]
    theirs = peers.load_selections(peers.selection_path(0, False)).get(peers.selection_name("random", fraction))
    if not committed or theirs is None:
        raise SystemExit(f"peers.json has no random {fraction:g} {learner} record or subset of seed 0 to pair with")
    done = work.record("random", fraction, 0, options=PAIRING, learner=learner)
    if done is None and learner == LEARNER:
        done = work.measure("random", fraction, 0, theirs[0], 0.0, options=PAIRING)
    elif done is None:
        folder = work.folder(0, "random", fraction, {}, prefix="check_", suffix=f"_{learner}")
        accuracy, seconds = transfer(work, learner, theirs[0], 0, folder)
        done = {"method": "random", "fraction": fraction, "seed": 0, "budget": BUDGET, "learner": learner,
                "test_accuracy": accuracy, "train_seconds": seconds, "options": PAIRING}  # fmt: skip
        work.add(done)
    if done["test_accuracy"] != committed[0]["test_accuracy"]:
        raise SystemExit(
            f"pairing check failed: random {fraction:g} seed 0 {learner} gives {done['test_accuracy']} here, "
            f"{committed[0]['test_accuracy']} in peers.json; the records cannot be paired"
        )


def variant_records(records: list[dict], learner: str | None = LEARNER) -> list[dict]:
    """The variants' records (not seed 0's grid points, not the pairing checks) of ``learner`` (None: all)."""
    return [
        r for r in records
        if not r.get("grid") and r.get("options") != PAIRING and learner in (None, r["learner"])
    ]  # fmt: skip


def load_records(path: Path) -> list[dict]:
    """The records, with the peers' scoring seconds taken from the peers benchmark (the first records
    took a resumed full run's, 0) and each choice's cost summed from its grid as it stands."""
    records = peers.load_records(path)
    for r in records:
        if r["method"].endswith("@train/coverage"):
            r["search_seconds"] = peer_seconds(r["seed"], r["method"].split("@")[0])
    for r in records:
        if not r.get("grid") and "coverage" in (r.get("options") or {}):
            grid_method = r["method"].replace("/balance+coverage", "/coverage")
            found = [
                g for g in records if g.get("grid") and g["method"] == grid_method and g["fraction"] == r["fraction"]
            ]
            r["choice_seconds"] = sum(g["search_seconds"] + g["train_seconds"] for g in found)
    return records


def peer_seconds(seed: int, function: str) -> float:
    """What the peer's scoring cost in the peers benchmark's run of this seed (the seconds inside its
    training-pass scorer, measured when the full model trained; a resumed full run measures none)."""
    committed = peers.load_selections(peers.selection_path(seed, False))
    name = peers.selection_name(f"{function}@train", FRACTIONS[0])
    if name not in committed:
        raise SystemExit(f"seed {seed}: the peers benchmark has no {name} selection to take its cost from")
    return float(committed[name][1])


def peer_scores(work: Work, seed: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The strong peers' training-pass scores of the seed's full run (trained once, resumed after)."""
    full, _ = peers.full_run(work.bench, seed)
    scores = {}
    for function in STRONG_PEERS:
        name = "early" if function == "el2n" else "all"
        scores[function] = full["scorers"][name].dynamics.scores(function)
    seconds = {function: peer_seconds(seed, function) for function in STRONG_PEERS}
    committed = peers.load_selections(peers.selection_path(seed, False))
    for function in STRONG_PEERS:  # the scores are the peers benchmark's: its plain subsets come out again
        for fraction in FRACTIONS:
            name = peers.selection_name(f"{function}@train", fraction)
            if name in committed:
                again = peers.select_top(scores[function], round(fraction * len(work.bench.pool_y)), seed)
                if not np.array_equal(again, committed[name][0]):
                    raise SystemExit(f"seed {seed}: {name} differs from the peers benchmark's committed subset")
    return scores, seconds


def peers_part(work: Work, seed: int) -> None:
    n = len(work.bench.pool_y)
    found: list = []

    def scores_of(function: str) -> tuple[np.ndarray, float]:
        if not found:
            found.append(peer_scores(work, seed))
        return found[0][0][function], found[0][1][function]

    for fraction in FRACTIONS:
        for function in STRONG_PEERS:
            method = f"{function}@train/coverage"
            for k, beta in GRID if seed == 0 else ():
                options = coverage_options(k, beta)
                if work.record(method, fraction, 0, grid=True, options=options) is None:
                    scores, seconds = scores_of(function)
                    rows = np.sort(select(scores, round(fraction * n), seed=seed, coverage=Coverage(k, beta)))
                    work.measure(method, fraction, 0, rows, seconds, options=options, grid=True)
            choice = chosen_point(work, method, fraction)
            if choice is None:
                raise SystemExit(f"{method} {fraction:g}: seed 0's grid is not measured; run seed 0 first")
            options, cost = choice
            if work.record(method, fraction, seed, options=options) is not None:
                continue
            scores, seconds = scores_of(function)
            coverage = Coverage(options["coverage"]["strata"], options["coverage"]["prune_hardest"])
            rows = np.sort(select(scores, round(fraction * n), seed=seed, coverage=coverage))
            work.keep(seed, peers.selection_name(method, fraction), rows, seconds)
            work.measure(method, fraction, seed, rows, seconds, options=options, choice_seconds=cost)


def build_up_part(work: Work, seed: int, variant: str) -> None:
    """Build-up with ``balance: class`` (variant "balance"), ``coverage`` (its grid on seed 0 first) or
    both ("balance+coverage": with the K and beta chosen for ``coverage`` alone, no grid of its own)."""
    for function in BUILD_UP:
        method = f"build_up/{function}/{variant}"
        if variant == "balance":
            if not all(work.record(method, f, seed, options={"balance": "class"}) for f in FRACTIONS):
                _search(work, seed, function, method, {"balance": "class"}, grid=False)
            continue
        grid_method = f"build_up/{function}/coverage"
        for k, beta in GRID if seed == 0 and variant == "coverage" else ():
            options = coverage_options(k, beta)
            if not all(work.record(method, f, 0, grid=True, options=options) for f in FRACTIONS):
                _search(work, 0, function, method, options, grid=True)
        for fraction in FRACTIONS:
            choice = chosen_point(work, grid_method, fraction)
            if choice is None:
                raise SystemExit(f"{grid_method} {fraction:g}: seed 0's grid is not measured; run part coverage first")
            options, cost = choice
            if variant == "balance+coverage":
                options = {"balance": "class", **options}
            if work.record(method, fraction, seed, options=options) is None:
                _search(work, seed, function, method, options, grid=False, only=fraction, choice_seconds=cost)


def _search(
    work: Work, seed: int, function: str, method: str, options: dict, *, grid: bool, only: float | None = None,
    choice_seconds: float = 0.0,
) -> None:  # fmt: skip
    tag = peers.options_tag(options)
    subsets, spent = peers.run_search(work.bench, seed, "build_up", function, PATH, options=options, tag=tag)
    for subset, budget, seconds in zip(subsets, PATH, spent, strict=True):
        if budget not in FRACTIONS or (only is not None and budget != only):
            continue
        if work.record(method, budget, seed, grid=grid, options=options) is not None:
            continue
        if not grid:
            work.keep(seed, peers.selection_name(method, budget), subset.index, seconds)
        work.measure(
            method, budget, seed, subset.index, seconds, options=options, grid=grid, choice_seconds=choice_seconds
        )


def transfer(work: Work, learner: str, rows: np.ndarray, seed: int, folder: Path) -> tuple[float, float]:
    """The test accuracy and seconds of the peers benchmark's transfer ``learner`` on ``rows``."""
    if learner == "logistic":
        accuracy, seconds, _ = peers.transfer_linear(work.bench, rows)
        return accuracy, seconds
    return peers.transfer_resnet(work.bench, rows, seed=seed, folder=folder)


def transfer_part(work: Work, seed: int, learner: str) -> None:
    """Every variant measured at :data:`TRANSFER_FRACTION` on ``seed`` to ``learner``, from the very rows
    its cnn_small record trained on (their digest is checked); seed 0 first retrains the peers' random
    subset and requires the committed accuracy, so that the pairing with peers.json holds."""
    fraction = TRANSFER_FRACTION
    if seed == 0:
        check_pairing(work, learner, fraction)
    sources = [r for r in variant_records(work.records) if r["seed"] == seed and r["fraction"] == fraction]
    for source in sorted(sources, key=lambda r: r["method"]):
        method, options = source["method"], source["options"]
        if work.record(method, fraction, seed, options=options, learner=learner) is not None:
            continue
        kept = work.selection(seed).get(peers.selection_name(method, fraction))
        if kept is None or _digest(kept[0]) != source["rows_sha256"]:
            raise SystemExit(f"seed {seed}: {method} {fraction:g}'s kept subset is not the one its model trained on")
        rows = kept[0]
        folder = work.folder(seed, method, fraction, options, suffix=f"_{learner}")
        accuracy, seconds = transfer(work, learner, rows, seed, folder)
        work.add(
            {
                **{k: source[k] for k in ("method", "fraction", "seed", "budget", "unique_samples", "options")},
                **{k: source[k] for k in ("class_share_min", "class_share_max", "search_seconds", "rows_sha256")},
                "learner": learner,
                "test_accuracy": accuracy,
                "train_seconds": seconds,
                "choice_seconds": source.get("choice_seconds", 0.0),
            }
        )
        work.log(f"seed {seed} {method} {fraction:g} {options} to {learner}: test {100 * accuracy:.2f}%")


# ------------------------------------------------------------------ tables
def plain_of(method: str) -> str:
    """The peers benchmark's method a variant changes the selection of."""
    return method.rsplit("/", 1)[0]


def comparisons(records: list[dict], learner: str = LEARNER) -> list[dict]:
    """Each variant and size measured with ``learner``: its accuracies by seed, the paired differences
    against the plain rule and random of the same seeds and learner (peers.json), class shares and seconds."""
    committed = [r for r in peers.load_records(peers.RESULTS) if r["budget"] == BUDGET and r["learner"] == learner]
    by = lambda rs, m, f: {r["seed"]: r for r in rs if r["method"] == m and r["fraction"] == f}  # noqa: E731
    ours = variant_records(records, learner)
    out = []
    for fraction in FRACTIONS:
        for method in sorted({r["method"] for r in ours if r["fraction"] == fraction}):
            mine = by(ours, method, fraction)
            accuracy = {s: r["test_accuracy"] for s, r in mine.items()}
            plain = {s: r["test_accuracy"] for s, r in by(committed, plain_of(method), fraction).items()}
            random = {s: r["test_accuracy"] for s, r in by(committed, "random", fraction).items()}
            out.append(
                {
                    "method": method,
                    "fraction": fraction,
                    "options": next(iter(mine.values()))["options"],
                    "accuracy": mean_sd(list(accuracy.values())),
                    "vs_plain": paired(accuracy, plain),
                    "vs_random": paired(accuracy, random),
                    "share_min": float(np.mean([r["class_share_min"] for r in mine.values()])),
                    "share_max": float(np.mean([r["class_share_max"] for r in mine.values()])),
                    "search_seconds": float(np.mean([r["search_seconds"] for r in mine.values()])),
                    "choice_seconds": float(np.mean([r.get("choice_seconds", 0.0) for r in mine.values()])),
                }
            )
    return out


def table(records: list[dict]) -> str:
    lines = []
    for learner in (LEARNER, *TRANSFER_LEARNERS):
        found = comparisons(records, learner)
        if learner != LEARNER and not found:
            continue
        lines += comparison_table(found, learner)
        if learner == LEARNER:
            lines += both_against_balance(records)
    return _grid_table(records, lines)


def both_against_balance(records: list[dict]) -> list[str]:
    """Build-up with both options against ``balance: class`` alone, paired by seed (cnn_small): what
    coverage adds where every class must keep its share."""
    ours = variant_records(records)
    by = lambda m, f: {r["seed"]: r["test_accuracy"] for r in ours if r["method"] == m and r["fraction"] == f}  # noqa: E731
    lines = []
    for function in BUILD_UP:
        for fraction in FRACTIONS:
            both, alone = (
                by(f"build_up/{function}/balance+coverage", fraction),
                by(f"build_up/{function}/balance", fraction),
            )
            if both and alone:
                lines.append(f"| build_up/{function} | {100 * fraction:g}% | {difference(paired(both, alone))} |")
    if not lines:
        return []
    head = [
        "Build-up with both options against `balance: class` alone (cnn_small, paired by seed, points, "
        "mean [95% interval]):",
        "| method | size | balance+coverage − balance |",
        "|---|---|---|",
    ]
    return [*head, *lines, ""]


def comparison_table(found: list[dict], learner: str) -> list[str]:
    what = (
        "the subset's own model"
        if learner == LEARNER
        else f"transfer: the cnn_small-chosen subset to {learner}, the peers benchmark's transfer learner"
    )
    lines = [
        f"budget {BUDGET}, learner {learner} ({what}): test accuracy %, mean ± sample sd (n seeds); paired differences "
        "(points, mean [95% interval]) against the plain rule and random of the same seeds and learner (peers.json); "
        "the subset's smallest and largest class share (the pool's: 10% each)",
        "| method | size | options | accuracy | − plain | − random | class shares | search s | choice s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in found:
        lines.append(
            f"| {c['method']} | {100 * c['fraction']:g}% | {json.dumps(c['options'])} | {text(c['accuracy'], 100)} "
            f"| {difference(c['vs_plain'])} | {difference(c['vs_random'])} "
            f"| {100 * c['share_min']:.1f}–{100 * c['share_max']:.1f}% | {c['search_seconds']:.0f} "
            f"| {c['choice_seconds']:.0f} |"
        )
    return [*lines, ""]


def _grid_table(records: list[dict], lines: list[str]) -> str:
    grid = [r for r in records if r.get("grid")]
    if grid:
        lines += [
            "seed 0's grid (the choice reads the validation accuracy only):",
            "| method | size | K | beta | validation % | test % |",
            "|---|---|---|---|---|---|",
        ]
        for r in sorted(grid, key=lambda r: (r["fraction"], r["method"])):
            c = r["options"]["coverage"]
            lines.append(
                f"| {r['method']} | {100 * r['fraction']:g}% | {c['strata']} | {c['prune_hardest']:g} "
                f"| {100 * r['val_accuracy']:.2f} | {100 * r['test_accuracy']:.2f} |"
            )
    return "\n".join(lines)


PARTS = ("check", "peers", "balance", "coverage", "balance+coverage", "transfer")

INTRO = """# Balanced and coverage selection

Every function keeps the highest scores first. `benchmarks/selection_options.py` measures the
other rules (`balance: class`, `coverage`, both) on the peers benchmark's protocol, unchanged:
all of Fashion-MNIST, a 55,000-image pool, 5,000 validation images, the 10,000 test images,
`cnn_small` subset models trained for the full model's 10 epochs from the same seed per seed.
The plain rule's records and random's are the peers benchmark's
(`benchmarks/results/peers.json`), paired by seed: the script first retrains one of them
(random 25%, seed 0) and requires the committed accuracy to the bit, and checks that the
peers' scores give their committed subsets again.

- The three strongest peers of the peers benchmark (variability, Dyn-Unc and EL2N from the
  full model's own training batches, `@train`) with `coverage`.
- Build-up (mutual information, variation ratios; the peers benchmark's path, a random start
  of S/16 doubling to 50%) with `balance: class`, with `coverage`, and with both.
- `coverage`'s K and beta are chosen once, on seed 0, from the grid K in {20, 50} x beta in
  {0, 0.05, 0.1, 0.2} (fixed before the first run), by the subset model's **validation**
  accuracy, per method and size; the other seeds use the chosen pair. Build-up with both
  options takes the pair chosen for build-up with coverage alone (no grid of its own). What
  choosing cost (every grid point's search and subset model, seconds) is the `choice s` column.
- Transfer: every variant's 50% subset (the one size both benchmarks measure) also trains the
  peers benchmark's two transfer learners, logistic regression and `resnet10`, paired with the
  peers' plain-rule and random records for the same learner and seed; the script first retrains
  the peers' random 50% with each learner and requires the committed accuracy to the bit.

Accuracies are test accuracy %, mean ± sample sd (n seeds); differences are paired by seed, in
points, with their 95% t-interval. Training differs in its last bits between CPUs, so a rerun
elsewhere moves each accuracy by a few tenths. Results:
`benchmarks/results/selection_options.json` (selections:
`benchmarks/results/selection_options_subsets/`).
"""


def plot(records: list[dict], path: Path) -> None:
    """Per size, each variant's paired difference from its plain rule and from random (points, 95% interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = comparisons(records)
    if not found:
        return
    most = max(sum(c["fraction"] == f for c in found) for f in FRACTIONS)
    fig, axes = plt.subplots(1, len(FRACTIONS), figsize=(12, 2.2 + 0.4 * most), sharex=True)
    for ax, fraction in zip(np.atleast_1d(axes), FRACTIONS, strict=True):
        rows = [c for c in found if c["fraction"] == fraction]
        for y, c in enumerate(rows):
            for key, color, shift in (("vs_plain", "C0", -0.12), ("vs_random", "C1", 0.12)):
                d = c[key]
                if not d["n"]:
                    continue
                low, high = d["ci95"] if d["ci95"] else (d["mean"], d["mean"])
                ax.errorbar(100 * d["mean"], y + shift, xerr=[[100 * (d["mean"] - low)], [100 * (high - d["mean"])]],
                            fmt="o", color=color, capsize=3)  # fmt: skip
        ax.axvline(0, color="grey", linewidth=1)
        ax.set_yticks(range(len(rows)), [f"{c['method']} (n={c['accuracy']['n']})" for c in rows], fontsize=7)
        ax.set_title(f"{100 * fraction:g}% of the pool", fontsize=9)
        ax.set_xlabel("test accuracy difference, points (95% interval)", fontsize=8)
    handles = [plt.Line2D([], [], color=c, marker="o", linestyle="") for c in ("C0", "C1")]
    fig.legend(handles, ["− the plain rule (highest first)", "− random"], loc="lower center", ncol=2, fontsize=8)
    fig.suptitle("Selection options against the plain rule and random, paired by seed (epochs budget)", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def demo_section() -> str:
    """The demo's class shares with and without balance (``benchmarks/demo_balance.py``), if run."""
    path = ROOT / "results" / "demo_balance.json"
    if not path.is_file():
        return ""
    runs = json.loads(path.read_text())["runs"]
    plain, balanced = runs["plain"], runs["balance"]
    names = plain["class_names"]

    def shares(run: dict) -> str:
        return " | ".join(f"{100 * s:.1f}" for s in run["subset_share"])

    accuracy = {k: 100 * v["accuracy"]["build_up"]["mean"] for k, v in runs.items()}
    return (
        "\n## The demo with and without `balance: class`\n\n"
        "`.venv/bin/python benchmarks/demo_balance.py` (`benchmarks/results/demo_balance.{json,png}`) runs\n"
        "`configs/demo.yaml` as it is and with `search.balance: class`: class shares of the final 50% subset, %\n"
        "(one seed; training differs by a few tenths between CPUs):\n\n"
        f"| | {' | '.join(names)} |\n|---|{'---|' * len(names)}\n"
        f"| pool | {' | '.join(f'{100 * s:.1f}' for s in plain['pool_share'])} |\n"
        f"| highest first | {shares(plain)} |\n| balance: class | {shares(balanced)} |\n\n"
        f"Subset models (mean of 2): {accuracy['plain']:.2f}% highest first, {accuracy['balance']:.2f}% balanced; "
        f"random {100 * plain['accuracy']['random']['mean']:.2f}%, full {100 * plain['accuracy']['full']['mean']:.2f}% "
        "(the same seeds in both runs).\n\n![the demo's class shares](results/demo_balance.png)\n"
    )


def write_page(records: list[dict]) -> None:
    """The page: the protocol, what is measured so far, and the tables from the JSON."""
    done = {}
    for r in variant_records(records, None):
        done.setdefault((r["learner"] != LEARNER, r["learner"], r["method"], r["fraction"]), set()).add(r["seed"])
    status = ", ".join(
        f"{m} {100 * f:g}%{'' if learner == LEARNER else f' to {learner}'} (n={len(s)})"
        for (_, learner, m, f), s in sorted(done.items(), key=lambda kv: kv[0])
    )
    variants = [f"{p}@train/coverage" for p in STRONG_PEERS]
    variants += [f"build_up/{f}/{v}" for f in BUILD_UP for v in ("balance", "coverage", "balance+coverage")]
    expected = {(False, LEARNER, m, f) for m in variants for f in FRACTIONS}
    expected |= {(True, learner, m, TRANSFER_FRACTION) for m in variants for learner in TRANSFER_LEARNERS}
    finished = all(len(done.get(k, ())) >= peers.SEEDS for k in expected)
    plot(records, RESULTS.with_suffix(".png"))
    figure = "\n![the variants against the plain rule and random](results/selection_options.png)\n"
    body = (
        f"{INTRO}\n## Results{'' if finished else ' so far'}\n\n"
        f"Measured: {status or 'nothing yet'}.\n\n{table(records)}\n{figure}"
        f"{demo_section()}"
    )
    with atomic_path(PAGE) as tmp:
        tmp.write_text(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=peers.SEEDS)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--replot", action="store_true", help="the tables from the JSON")
    args = parser.parse_args()
    if args.replot:
        write_page(load_records(RESULTS))
        print(table(load_records(RESULTS)))
        return
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    bench = peers.prepare(ROOT / ".data" / "peers", quick=False)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:.0f} s] {message}", flush=True)

    work = Work(bench, RESULTS, log)
    meta = RESULTS.with_name("selection_options_run.json")
    steps = [
        (part, seed, learner)
        for part in PARTS if part in parts
        for learner in (TRANSFER_LEARNERS if part == "transfer" else (LEARNER,))
        for seed in ([0] if part == "check" else range(args.seeds))
    ]  # fmt: skip
    for part, seed, learner in steps:
        if part == "check":
            check_pairing(work)
        elif part == "peers":
            peers_part(work, seed)
        elif part == "transfer":
            transfer_part(work, seed, learner)
        else:
            build_up_part(work, seed, part)
        write_page(work.records)
        with atomic_path(meta) as tmp:
            tmp.write_text(
                json.dumps(
                    {
                        "command": "python benchmarks/selection_options.py",
                        "machine": f"{platform.processor() or platform.machine()}, 2 threads",
                        "last_done": {"part": part, "seed": seed, "learner": learner},
                        "seconds_this_session": time.perf_counter() - started,
                    },
                    indent=1,
                )
                + "\n"
            )
    print(table(work.records))


if __name__ == "__main__":
    main()
