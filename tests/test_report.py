"""The report's analyses and the paper's studies on hand-made run directories whose answers are
worked out by hand here (consensus counts on crafted votes, accuracies on crafted predictions,
means and spreads of hand-picked accuracies)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from subsetsearch.report import studies
from subsetsearch.report.analyses import (
    checkpoint_consensus,
    consecutive_pairs,
    holm,
    paired_difference,
    selected_accuracy,
    student_t_quantile,
    student_t_sf,
    time_to_accuracy,
)
from subsetsearch.rundir import Subset, read_run, split_variant
from subsetsearch.stats import EnsembleStats

# -- hand-made run directories ----------------------------------------------------------------------


def write_subset(path: Path, index, iteration, multiplicity=None) -> None:
    index = np.asarray(index, dtype=np.int64)
    table = pa.table(
        {
            "index": index,
            "multiplicity": np.ones(len(index), np.int64) if multiplicity is None else np.asarray(multiplicity),
            "score": np.zeros(len(index)),
            "iteration": np.asarray(iteration, dtype=np.int64),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def make_run(
    path: Path,
    scheme: str = "build_up",
    variants: dict[str, tuple[int, list[float]]] | None = None,
    histories: dict[str, list[dict]] | None = None,
    finished: bool = True,
    config: dict | None = None,
) -> Path:
    """A run directory written file by file: config.yaml, one metrics.json per step, metrics.json with
    ``variants`` (name -> (subset size, accuracies)), models with ``histories``."""
    path.mkdir(parents=True)
    cfg = {
        "name": path.name,
        "search": {"scheme": scheme, "budgets": [0.25, 0.5]},
        **(config or {}),
        "subsetsearch_version": "0.2.0",  # as a run writes it (0.1.0 and 0.2.0 wrote no marker)
    }
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    for i in range(2):
        step = path / f"iter_{i:02d}"
        step.mkdir()
        metrics = {"iteration": i, "subset_size": 10 * (i + 1)}
        if scheme in ("compress", "pretrain"):  # as a run writes it: the ensemble trained on all 40 rows
            metrics.update(kind="acquisition", trained_on=40, scored=40)
        (step / "metrics.json").write_text(json.dumps(metrics))
    for name, history in (histories or {}).items():
        folder = path / "models" / name / "model_0"
        folder.mkdir(parents=True)
        (folder / "done.json").write_text(
            json.dumps({"history": history, "best_epoch": len(history), "seconds": history[-1]["seconds"]})
        )
    if finished:
        payload = {
            "pool_size": 40,
            "variants": {
                name: {"subset_size": size, "test_accuracy": accs, "train_seconds": [1.0] * len(accs)}
                for name, (size, accs) in (variants or {}).items()
            },
        }
        (path / "metrics.json").write_text(json.dumps(payload))
    return path


# -- analyses on arrays -----------------------------------------------------------------------------


def test_selected_accuracy_by_hand():
    labels = np.array([0, 1, 2, 0, 1, 2])
    predicted = np.array([0, 0, 2, 0, 2, 2])  # wrong on rows 1 and 4
    # scored rows 1..5; selected 1, 2: right on 2 only -> 0.5; unselected 3, 4, 5: right on 3, 5 -> 2/3
    a, b = selected_accuracy(predicted, labels, np.arange(1, 6), np.array([1, 2]))
    assert a == 0.5 and b == pytest.approx(2 / 3)
    a, b = selected_accuracy(predicted, labels, np.arange(1, 6), np.arange(1, 6))
    assert a == pytest.approx(3 / 5) and np.isnan(b)


def test_consecutive_pairs_follow_epochs_within_each_run():
    names = ["run_1/epoch_002", "run_0/epoch_003", "run_0/epoch_001", "run_1/epoch_001", "run_0/best"]
    assert consecutive_pairs(names) == [(2, 1), (3, 0)]  # run_0: 1->3; run_1: 1->2; best pairs with nothing


def test_checkpoint_consensus_on_crafted_votes():
    names = ["run_0/epoch_001", "run_0/epoch_002", "run_0/epoch_003"]
    votes = np.array(
        [
            [0, 1, 2, 3, 4, 5],
            [0, 1, 2, 9, 4, 9],  # differs from epoch 1 on columns 3 and 5
            [0, 7, 2, 9, 4, 5],  # differs from epoch 2 on columns 1 and 5
        ]
    )
    every = checkpoint_consensus(votes, names, np.arange(6))
    assert every.pairs == [("run_0/epoch_001", "run_0/epoch_002"), ("run_0/epoch_002", "run_0/epoch_003")]
    assert every.pair_agree.tolist() == [4, 4]
    assert every.all_agree == 3  # columns 0, 2, 4
    part = checkpoint_consensus(votes, names, np.array([1, 3, 4]))
    assert part.pair_agree.tolist() == [2, 2] and part.all_agree == 1 and part.samples == 3


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.integers(1, 30), st.integers(2, 4), st.integers(0, 2**31))
def test_consensus_matches_a_loop_over_samples(m, n, c, seed):
    rng = np.random.default_rng(seed)
    votes = rng.integers(0, c, size=(m, n))
    names = [f"run_0/epoch_{e:03d}" for e in range(1, m + 1)]
    rows = np.flatnonzero(rng.random(n) < 0.6)
    result = checkpoint_consensus(votes, names, rows)
    for j in range(m - 1):
        assert result.pair_agree[j] == sum(votes[j, r] == votes[j + 1, r] for r in rows)
    assert result.all_agree == sum(len(set(votes[:, r].tolist())) == 1 for r in rows)


@settings(max_examples=80, deadline=None)
@given(df=st.integers(1, 300), p=st.sampled_from([0.9, 0.95, 0.975, 0.995]))
def test_student_t_quantile_is_scipys(df, p):
    from scipy import stats as scipy_stats

    assert student_t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-10)


@pytest.mark.parametrize(("p", "df"), [(0.5, 3), (1.0, 3), (0.975, 0), (0.975, 2.5)])
def test_student_t_quantile_refuses(p, df):
    with pytest.raises(ValueError, match=r"need 0\.5 < p < 1 and an integer df >= 1"):
        student_t_quantile(p, df)


@settings(max_examples=80, deadline=None)
@given(df=st.integers(1, 300), t=st.floats(-12.0, 12.0))
def test_student_t_sf_is_scipys(df, t):
    from scipy import stats as scipy_stats

    if abs(t) >= 1e-4:
        assert student_t_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-13)
    else:
        # SciPy works through df / (df + t^2), which rounds to 1 for |t| below about 1e-8 and returns
        # 0.5 there (an absolute error up to ~t * density(0)). Near 0 the reference is the density's
        # Taylor series instead: sf(t) = 1/2 - f(0) (t - (df + 1) t^3 / (6 df)) + O(t^5).
        f0 = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
        assert student_t_sf(t, df) == pytest.approx(0.5 - f0 * (t - (df + 1) * t**3 / (6 * df)), rel=1e-12)


@pytest.mark.parametrize("t", [1.7197109966442732e-09, -3e-7, 2e-5])
def test_student_t_sf_near_zero_is_cauchys(t):
    # df = 1 in closed form, at the |t| where SciPy returns 0.5 (found by the test above)
    assert student_t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, rel=1e-14)


def test_student_t_sf_by_hand():
    # df = 1 is Cauchy: P(T > 1) = 1/2 - atan(1)/pi = 1/4; df = 2: P(T > t) = (1 - t/sqrt(2 + t^2)) / 2
    assert student_t_sf(1.0, 1) == pytest.approx(0.25, abs=1e-15)
    assert student_t_sf(2.0, 2) == pytest.approx((1 - 2 / math.sqrt(6)) / 2, abs=1e-15)
    assert student_t_sf(0.0, 7) == 0.5 and student_t_sf(math.inf, 3) == 0.0 and student_t_sf(-math.inf, 3) == 1.0
    with pytest.raises(ValueError, match="integer df >= 1"):
        student_t_sf(1.0, 0)
    with pytest.raises(ValueError, match="NaN"):
        student_t_sf(math.nan, 3)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 of m = 3: 3 * 0.01 = 0.03; 2 * 0.03 = 0.06; 1 * 0.04 = 0.04 -> 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06], abs=1e-15)
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # 2 * 0.5 and 2 * 0.6 capped at 1 -> 1, max(1, 0.6) = 1
    assert holm([0.02]) == [0.02] and holm([]) == []


@settings(max_examples=200, deadline=None)
@given(
    p=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12),
    alpha=st.sampled_from([0.01, 0.025, 0.05, 0.1]),
)
def test_holm_rejects_what_the_step_down_procedure_rejects(p, alpha):
    # the procedure as Holm (1979) states it: order the p-values; reject H_(1..k) while p_(i) <= alpha / (m - i + 1)
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    rejected = set()
    for rank, i in enumerate(order):
        if p[i] > alpha / (m - rank):
            break
        rejected.add(i)
    adjusted = holm(p)
    # an adjusted value equal to alpha up to rounding is left out: the two forms round differently there
    decided = [i for i in range(m) if abs(adjusted[i] - alpha) > 1e-12]
    assert {i for i in decided if adjusted[i] <= alpha} == rejected & set(decided)
    assert all(a >= b for a, b in zip(adjusted, p, strict=True))


def test_paired_difference_by_hand():
    # trials a, b, c: differences 0.03, 0.01, 0.05 (trial d has no pair): mean 0.03, sd 0.02,
    # half-width t(0.975, 2) * 0.02 / sqrt(3) = 4.302653 * 0.011547 = 0.049683
    d = paired_difference({"a": 0.93, "b": 0.91, "c": 0.95, "d": 0.5}, {"a": 0.90, "b": 0.90, "c": 0.90})
    assert (d["n"], d["keys"]) == (3, ["a", "b", "c"])
    assert d["mean"] == pytest.approx(0.03) and d["sd"] == pytest.approx(0.02)
    assert d["ci95"] == pytest.approx([0.03 - 0.049683, 0.03 + 0.049683], abs=1e-6)
    assert studies.difference_text(d) == "+3.00 [-1.97, +7.97] (n=3)"
    assert studies.difference_text(paired_difference({"a": 0.9}, {"b": 0.8})) == "-"


def test_time_to_accuracy():
    history = [{"seconds": 1.0, "val_accuracy": 0.5}, {"seconds": 2.5, "val_accuracy": 0.8}, {"seconds": 4.0}]
    assert time_to_accuracy(history, 0.7) == 2.5
    assert time_to_accuracy(history, 0.9) is None


def test_split_variant():
    assert split_variant("build_up@iter_01") == ("build_up", 1)
    assert split_variant("random") == ("random", None)


# -- studies over hand-made run directories ---------------------------------------------------------


def test_schemes_study_means_and_spreads_by_hand(tmp_path):
    cells = {
        "build_up": [
            make_run(
                tmp_path / "b0",
                variants={"build_up@iter_00": (10, [0.80]), "build_up": (20, [0.90]), "full": (40, [0.91])},
            ),
            make_run(
                tmp_path / "b1",
                variants={"build_up@iter_00": (10, [0.70]), "build_up": (20, [0.86]), "full": (40, [0.95])},
            ),
        ],
        "random": [
            make_run(tmp_path / "r0", "random", {"random@iter_00": (10, [0.60]), "random": (20, [0.80])}),
            make_run(tmp_path / "r1", "random", {"random@iter_00": (10, [0.64]), "random": (20, [0.84, 0.86])}),
        ],
    }
    result = studies.schemes({k: [read_run(p) for p in v] for k, v in cells.items()})
    assert result.header == ["", "25.0%", "50.0%"]  # sizes 10 and 20 of a pool of 40
    # sample sd of two trials a and b: |a - b| / sqrt(2); 0.80, 0.70 -> 7.07; 0.90, 0.86 -> 2.83
    assert result.rows[0] == ["build_up", "75.00 ± 7.07 (n=2)", "88.00 ± 2.83 (n=2)"]
    # trial r1 trained two models at 20: its value is their mean, 0.85; trials 0.80 and 0.85 -> sd 3.54
    assert result.rows[1] == ["random", "62.00 ± 2.83 (n=2)", "82.50 ± 3.54 (n=2)"]
    assert result.rows[2] == ["full", "-", "93.00 ± 2.83 (n=2)"]
    assert result.data["series"]["build_up"]["20"]["trials"] == [0.90, 0.86]
    assert result.data["series"]["build_up"]["20"]["n"] == 2
    assert result.data["series"]["build_up"]["20"]["sd"] == pytest.approx(0.04 / np.sqrt(2))
    figure = tmp_path / "f.png"
    result.figure(figure)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_budget_study_uses_the_compare_baseline_once_per_trial_and_lists_unfinished(tmp_path):
    v = {"build_up": (20, [0.9]), "random": (20, [0.8]), "full": (40, [0.95])}
    cells = {
        "entropy": [read_run(make_run(tmp_path / "e0", variants=v, config={"seed": 0}))],
        "mutual_information": [
            read_run(make_run(tmp_path / "m0", variants={**v, "build_up": (20, [0.92])}, config={"seed": 0})),
            read_run(make_run(tmp_path / "m1", finished=False, config={"seed": 1})),
        ],
    }
    result = studies.functions(cells)
    assert result.rows == [
        ["entropy", "90.00"],
        ["mutual_information", "92.00"],
        ["random (baseline)", "80.00"],  # both cells' seed-0 runs share one baseline: one value
        ["full", "95.00"],
    ]
    assert result.missing == ["mutual_information: m1 has not finished"]


def test_architecture_study_gaps(tmp_path):
    run = make_run(
        tmp_path / "a",
        variants={"build_up": (20, [0.90]), "random": (20, [0.85]), "full": (40, [0.92])},
        config={"subset_model": {"model": {"name": "resnet10", "width": 16}}},
    )
    result = studies.architecture({"big": [read_run(run)]})
    # one trial: the paired difference is the difference itself, without an interval
    assert result.rows == [
        ["big (resnet10, width 16)", "50.0%", "90.00", "85.00", "92.00", "+5.00 (n=1)", "-2.00 (n=1)"]
    ]


def _acquisition_metrics(run: Path, **values) -> None:
    (run / "iter_01" / "metrics.json").write_text(json.dumps({"iteration": 1, "kind": "acquisition", **values}))


def test_outliers_study_pairs_each_rule_with_its_trials_baselines(tmp_path):
    runs = []
    for seed, (ours, rand, full, left) in enumerate([(0.80, 0.78, 0.90, 5), (0.84, 0.80, 0.92, 7)]):
        run = make_run(
            tmp_path / f"s{seed}",
            "compress",
            variants={"compress": (20, [ours]), "random": (20, [rand]), "full": (40, [full])},
            config={"seed": seed, "search": {"scheme": "compress", "budgets": [0.5], "skip_top": 0.125}},
        )
        _acquisition_metrics(run, skipped_top=left)
        runs.append(read_run(run))
    result = studies.outliers({"skip": runs})
    # differences against random 0.02, 0.04: mean 0.03, sd 0.01414; t(0.975, 1) = 12.706, so the
    # half-width is 12.706 * 0.01414 / sqrt(2) = 0.12706. Against full -0.10, -0.08: mean -0.09.
    assert result.rows == [
        [
            "skip",
            "compress",
            "50.0%",
            "top 12.5% of the ranking set aside",
            "6",  # (5 + 7) / 2 rows set aside at the last step
            "82.00 ± 2.83 (n=2)",
            "+3.00 [-9.71, +15.71] (n=2)",
            "-9.00 [-21.71, +3.71] (n=2)",
        ]
    ]
    rule = make_run(
        tmp_path / "d",
        variants={"build_up": (20, [0.8])},
        config={"seed": 0, "search": {"scheme": "build_up", "budgets": [0.25, 0.5], "skip_disagreement": True}},
    )
    _acquisition_metrics(rule, disagreement_outliers=3)
    assert studies.outliers({"rule": [read_run(rule)]}).rows[0][3:6] == [
        "rows every member disagrees on left out",
        "3",
        "80.00",
    ]


def test_ensembles_study_on_its_training_rows_and_the_rows_it_never_saw(tmp_path):
    run = make_run(
        tmp_path / "e",
        variants={"build_up": (3, [0.7]), "random": (3, [0.6])},
        config={"seed": 0, "search": {"scheme": "build_up", "budgets": [2, 3], "score_subset": True}},
    )
    step = run / "iter_01"
    # 5 pool rows, all scored by 2 members (score_subset); the mean prediction is argmax [0, 1, 1, 0, 2]
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    stats = EnsembleStats(5, 3)
    stats.update(probs)
    stats.update(probs)
    stats.save(step / "stats.npz")
    (step / "metrics.json").write_text(json.dumps({"iteration": 1, "members": 2, "kind": "acquisition"}))
    names = np.array(["run_0/epoch_001", "run_0/epoch_002"])
    votes = np.array([[0, 1, 1, 1, 2], [0, 0, 2, 0, 2]], dtype=np.uint16)
    np.savez(step / "votes.npz", rows=np.arange(5), names=names, votes=votes)
    write_subset(step / "subset.parquet", [1, 3, 4], [0, 0, 1])  # trained on rows 1, 3; row 4 acquired now
    labels = np.array([0, 1, 2, 1, 2])  # the ensemble is right on rows 0, 1, 4 and wrong on 2, 3
    result = studies.ensembles({"two": [read_run(run)]}, lambda r: labels)
    assert result.rows == [
        # the last checkpoint (epoch 2) alone: wrong on training rows 1 and 3, right on 0, 2 and 4
        ["single (run_0/epoch_002 of two)", "1", "0.00", "100.00", "-", "-"],
        # the ensemble: training rows 1 (right), 3 (wrong); rows it never saw 0, 2, 4: 2 of 3 right
        ["two", "2", "50.00", "66.67", "70.00", "+10.00 (n=1)"],
        ["random (baseline)", "-", "-", "-", "60.00", "-"],
    ]
    # scored without score_subset: no accuracy on its training rows, and the report says why
    partial = EnsembleStats(5, 3)
    partial.update(probs[[0, 2, 4]], index=np.array([0, 2, 4]))
    partial.save(step / "stats.npz")
    again = studies.ensembles({"two": [read_run(run)]}, lambda r: labels)
    assert again.rows[1][2:4] == ["-", "66.67"]
    assert "did not score its own training rows (set search.score_subset)" in again.missing[0]


def test_consensus_study_on_the_rows_the_ensemble_never_trained_on(tmp_path):
    run = make_run(tmp_path / "c", "build_up")
    step = run / "iter_01"
    rows = np.array([10, 11, 12, 13])
    votes = np.array([[1, 1, 2, 2], [1, 0, 2, 2], [1, 0, 2, 0]], dtype=np.uint16)
    names = np.array(["run_0/epoch_001", "run_0/epoch_002", "run_0/epoch_003"])
    np.savez(step / "votes.npz", rows=rows, names=names, votes=votes)
    # trained on rows 12 and 7; row 13 acquired by this step still counts: the ensemble never saw it
    write_subset(step / "subset.parquet", [12, 7, 13], [0, 0, 1])
    labels = np.zeros(14, np.int64)
    labels[[10, 11, 13]] = [1, 0, 2]
    result = studies.consensus({"cnn": [read_run(run)]}, lambda r: labels)
    # on rows 10, 11, 13: pair 1-2 agree on 10, 13 -> 2; pair 2-3 on 10, 11 -> 2; all three: 10 -> 1
    assert result.data["cnn"]["pair_agree"] == [2, 2]
    assert result.data["cnn"]["all_agree"] == 1 and result.data["cnn"]["samples"] == 3
    # accuracy there: epoch 1 votes 1, 1, 2 -> 2 of 3; epoch 2 1, 0, 2 -> 3 of 3; epoch 3 1, 0, 0 -> 2 of 3
    assert result.data["cnn"]["member_accuracy"] == pytest.approx([2 / 3, 1.0, 2 / 3])
    assert result.rows == [["cnn", "3", "3", "66.67", "33.33", "66.67 / 100.00"]]
    compress = make_run(tmp_path / "p", "compress")  # its ensemble trained on every row: nothing unseen
    np.savez(compress / "iter_01" / "votes.npz", rows=rows, names=names, votes=votes)
    empty = studies.consensus({"none": [read_run(compress)]})
    assert empty.rows == [] and empty.figure is None and "none/p:" in empty.missing[0]


def test_curves_study_saves_training_time_to_the_full_models_best(tmp_path):
    def history(accs, step):
        return [{"epoch": e + 1, "seconds": step * (e + 1), "val_accuracy": a} for e, a in enumerate(accs)]

    run = make_run(
        tmp_path / "v",
        variants={"build_up": (20, [0.9]), "full": (40, [0.91])},
        histories={"build_up": history([0.80, 0.88, 0.905], 1.0), "full": history([0.85, 0.90, 0.91], 2.0)},
    )
    result = studies.curves({"b": [read_run(run)]})
    # full's best is 0.91, which the subset model never reaches; within 0.5 points (0.905) it does at
    # epoch 3 (3.0 s) and full at epoch 3 (6.0 s): half the seconds, and 3 epochs of half the rows
    assert result.rows == [["b", "50%", "0 of 1", "-", "-", "1 of 1", "50.0", "50.0"]]
    assert result.tables[0][2] == [
        ["b/v", "build_up", "3", "3.0", "90.50", "never", "3.0"],
        ["b/v", "full", "3", "6.0", "91.00", "6.0", "6.0"],
    ]
    no_validation = make_run(
        tmp_path / "w",
        histories={"build_up": [{"epoch": 1, "seconds": 1.0}], "full": [{"epoch": 1, "seconds": 2.0}]},
    )
    assert studies.curves({"b": [read_run(no_validation)]}).rows == []


def test_curves_study_pairs_each_cell_with_the_random_control_by_trial(tmp_path):
    def history(accs, step):
        return [{"epoch": e + 1, "seconds": step * (e + 1), "val_accuracy": a} for e, a in enumerate(accs)]

    full = history([0.85, 0.90, 0.91, 0.91], 2.0)  # best 0.91 at epoch 3: 6.0 s
    cells = {"b": [], "random": []}
    # build_up reaches 0.91 at epochs 2 and 1 (trials 0, 1); random at epoch 3 in both; 1 s per epoch
    for cell, scheme, reach in (("b", "build_up", (2, 1)), ("random", "random", (3, 3))):
        for trial, epoch in enumerate(reach):
            accs = [0.80] * (epoch - 1) + [0.91] + [0.91] * (4 - epoch)
            run = make_run(
                tmp_path / f"{cell}{trial}",
                scheme=scheme,
                variants={scheme: (20, [0.9]), "full": (40, [0.91])},
                histories={scheme: history(accs, 1.0), "full": full},
                config={"seed": trial},
            )
            cells[cell].append(read_run(run))
    result = studies.curves(cells)
    title, header, rows = result.tables[0]
    assert "random subset" in title and header[0] == "cell"
    # seconds saved, 1 - s / 6.0: b 4/6, 5/6; random 3/6, 3/6 -> differences 1/6, 2/6: mean 1/4, sd sqrt(2)/12;
    # half-width t(0.975, 1) * sd / sqrt(2) = 12.7062047 / 12 = 1.0588504 -> [-0.8088504, +1.3088504]
    # samples saved, 1 - (epoch * 0.5) / 3: b 2/3, 5/6; random 1/2, 1/2 -> the same differences
    assert rows == [["b", *["+25.00 [-80.89, +130.89] (n=2)"] * 4]]


def test_a_partial_run_reads_what_it_has(tmp_path):
    run = read_run(make_run(tmp_path / "p", finished=False, histories={"build_up": [{"epoch": 1, "seconds": 1.0}]}))
    assert run.metrics is None and any("not finished" in m for m in run.missing)
    assert run.variants() == {"build_up": {"test_accuracy": [], "train_seconds": [1.0], "partial": True}}
    with pytest.raises(ValueError, match="not a run directory"):
        read_run(tmp_path)


def test_rows_a_step_added_include_the_ones_chosen_again():
    from subsetsearch.report.pages import _added_rows

    def table(index, multiplicity):
        n = len(index)
        return Subset(np.array(index), np.array(multiplicity), np.zeros(n), np.zeros(n, np.int64))

    before = table([1, 2], [1, 1])
    after = table([1, 2, 5], [2, 1, 1])  # row 1 chosen again (automatic duplication), row 5 new
    assert _added_rows(after, before).tolist() == [1, 5]
    assert _added_rows(before, None).tolist() == [1, 2]
    assert _added_rows(None, before).tolist() == []


def test_budget_study_of_detection_runs_reads_wmap(tmp_path):
    run = make_run(tmp_path / "d", config={"task": "detection"})
    metrics = {
        "pool_size": 40,
        "variants": {
            "build_up": {"subset_size": 20, "test_metrics": [{"wMAP": 0.40}, {"wMAP": 0.50}], "train_seconds": [1, 1]},
            "full": {"subset_size": 40, "test_metrics": [{"wMAP": 0.60}], "train_seconds": [2]},
        },
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    result = studies.schemes({"auto": [read_run(run)]})
    assert result.rows == [["auto", "45.00"], ["full", "60.00"]]  # one trial: the mean of its two detectors
