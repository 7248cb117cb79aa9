"""The report's analyses and the paper's studies on hand-made run directories whose answers are
worked out by hand here (consensus counts on crafted votes, accuracies on crafted predictions,
means and spreads of hand-picked accuracies)."""

from __future__ import annotations

import json
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
    class_balance,
    consecutive_pairs,
    selected_accuracy,
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
    cfg = {"name": path.name, "search": {"scheme": scheme, "budgets": [0.25, 0.5]}, **(config or {})}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    for i in range(2):
        step = path / f"iter_{i:02d}"
        step.mkdir()
        (step / "metrics.json").write_text(json.dumps({"iteration": i, "subset_size": 10 * (i + 1)}))
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


def test_class_balance_counts_multiplicity():
    labels = np.array([0, 1, 1, 2, 2, 2])
    # rows 0 (class 0) twice, row 1 (class 1) once, row 5 (class 2) once: 2/4, 1/4, 1/4
    np.testing.assert_allclose(class_balance(labels, [0, 1, 5], [2, 1, 1], 4), [0.5, 0.25, 0.25, 0.0])
    # detection: boxes per class of each image
    boxes = np.array([[1, 0], [0, 3], [2, 2]])
    np.testing.assert_allclose(class_balance(boxes, [0, 2], [1, 2], 2), [5 / 9, 4 / 9])  # (1+4, 0+4) / 9
    assert class_balance(labels, [], [], 3).tolist() == [0, 0, 0]


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
    assert result.rows == [["big (resnet10, width 16)", "90.00", "85.00", "92.00", "+5.00", "-2.00"]]


def test_ensembles_study_accuracy_on_selected_and_unselected(tmp_path):
    run = make_run(tmp_path / "e", "compress", variants={"compress": (2, [0.7])})
    step = run / "iter_00"
    # 5 pool rows, all scored by 2 members; the mean prediction is argmax [0, 1, 1, 0, 2]
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    stats = EnsembleStats(5, 3)
    stats.update(probs)
    stats.update(probs)
    stats.metadata = {"members": ["run_0/epoch_001", "run_0/epoch_002"]}
    stats.save(step / "stats.npz")
    (step / "metrics.json").write_text(json.dumps({"iteration": 0, "subset_size": 2, "members": 2}))
    write_subset(step / "subset.parquet", [1, 3], [0, 0])
    labels = np.array([0, 1, 2, 1, 2])  # right on rows 0, 1, 4; wrong on 2, 3
    result = studies.ensembles({"two": [read_run(run)]}, lambda r: labels)
    # selected rows 1 (right), 3 (wrong): 50%; unselected 0, 2, 4: 2 of 3 right
    assert result.rows == [["two", "2", "50.00", "66.67", "70.00"]]


def test_consensus_study_on_the_unselected_rows_of_the_last_scored_step(tmp_path):
    run = make_run(tmp_path / "c", "compress")
    step = run / "iter_01"
    rows = np.array([10, 11, 12, 13])
    votes = np.array([[1, 1, 2, 2], [1, 0, 2, 2], [1, 0, 2, 0]], dtype=np.uint16)
    names = np.array(["run_0/epoch_001", "run_0/epoch_002", "run_0/epoch_003"])
    np.savez(step / "votes.npz", rows=rows, names=names, votes=votes)
    write_subset(step / "subset.parquet", [12, 7], [1, 0])  # row 12 selected: unselected 10, 11, 13
    result = studies.consensus({"cnn": [read_run(run)]})
    # on columns of rows 10, 11, 13: pair 1-2 agree on 10, 13 -> 2; pair 2-3 on 10, 11 -> 2; all: 10 -> 1
    assert result.data["cnn"]["pair_agree"] == [2, 2]
    assert result.data["cnn"]["all_agree"] == 1 and result.data["cnn"]["samples"] == 3
    assert result.rows == [["cnn", "3", "66.67 / 66.67 / 66.67", "33.33"]]
    empty = studies.consensus({"none": [read_run(make_run(tmp_path / "n"))]})
    assert empty.rows == [] and empty.figure is None and "none:" in empty.missing[0]


def test_curves_study_time_to_the_full_models_accuracy(tmp_path):
    def history(accs, step):
        return [{"epoch": e + 1, "seconds": step * (e + 1), "val_accuracy": a} for e, a in enumerate(accs)]

    run = make_run(
        tmp_path / "v",
        histories={"build_up": history([0.80, 0.88, 0.905], 1.0), "full": history([0.85, 0.90, 0.91], 2.0)},
    )
    result = studies.curves({"b": [read_run(run)]})
    # target: full's best 0.91 - 0.005 = 0.905; subset reaches it at 3.0 s, full at 6.0 s: 2x sooner
    assert result.rows[0][1:] == ["build_up", "3", "3.0", "90.50", "3.0", "2.00x"]
    assert result.rows[1][1:] == ["full", "3", "6.0", "91.00", "6.0", "-"]
    no_validation = make_run(
        tmp_path / "w",
        histories={"build_up": [{"epoch": 1, "seconds": 1.0}], "full": [{"epoch": 1, "seconds": 2.0}]},
    )
    assert studies.curves({"b": [read_run(no_validation)]}).rows == []


def test_a_partial_run_reads_what_it_has(tmp_path):
    run = read_run(make_run(tmp_path / "p", finished=False, histories={"build_up": [{"epoch": 1, "seconds": 1.0}]}))
    assert run.metrics is None and any("not finished" in m for m in run.missing)
    assert run.variants() == {"build_up": {"test_accuracy": [], "train_seconds": [1.0], "partial": True}}
    with pytest.raises(ValueError, match="not a run directory"):
        read_run(tmp_path)


def test_rows_a_step_added_include_the_ones_chosen_again():
    from subsetsearch.pipeline.report import _added_rows

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
