"""`subsetsearch run` end to end on real data (digits; a slice of Fashion-MNIST): every scheme, every
ensemble configuration, resume after SIGKILL. Scores are recomputed independently from the stored
checkpoints with the textbook formulas of tests/reference.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from reference import direct_scores

from subsetsearch.errors import InputError
from subsetsearch.internal.budgets import budget_counts
from subsetsearch.internal.ledger import Ledger
from subsetsearch.pipeline.classify import load_splits
from subsetsearch.pipeline.config import parse_config
from subsetsearch.pipeline.run import run_config, summary
from subsetsearch.pipeline.search import Search
from subsetsearch.rundir import Subset
from subsetsearch.stats import EnsembleStats
from subsetsearch.train import data as datasets
from subsetsearch.train import trainer

BASE = {
    "name": "t",
    "seed": 1,
    "data": {"dataset": "digits", "limit": 600, "test_limit": 300},
    "model": {"name": "cnn_small", "width": 4},
    "train": {
        "epochs": 3,
        "batch_size": 64,
        "augment": {"crop_padding": 1, "flip": False},
        "threads": 1,
        "precision": "fp32",  # explicit: the same path on every CPU (bf16 cases force it)
    },
    "ensemble": {"kind": "checkpoints", "start": 1, "stop": 3},
    "search": {"scheme": "build_up", "budgets": [0.2, 0.4, 0.6]},
}


def _config(**changes):
    config = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(config)


def _table(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    # digits: each row's identity is its row of scikit-learn's load_digits() (tests/test_user_data.py checks it)
    assert table.column_names == ["index", "multiplicity", "score", "iteration", "source_row"]
    return {name: table[name].to_numpy() for name in table.column_names}


def _member_probs(search: Search, iteration: int, rows: np.ndarray) -> np.ndarray:
    """Every member's softmax on ``rows`` from its checkpoint, stacked [M, n, C]: in the run's own
    precision and on the same batches as the run's scoring (shards of 8,192 rows, a multiple of
    the inference batch, so ``predict`` over all ``rows`` meets the same batches)."""
    members = []
    for member in search.task.member_files(iteration):
        net = search.task.acq_net.build(0)
        trainer.load_weights(net, member.path)
        members.append(trainer.predict(search.task.acq_net, net, search.task.pool, rows))
    return np.stack(members)


def _held(stats: EnsembleStats) -> list[str]:
    """The members a step's statistics hold whole, by their ledger."""
    return Ledger.of(stats.metadata).members


def _reference_scores(search: Search, iteration: int, rows: np.ndarray, labels=None) -> dict[str, np.ndarray]:
    """Every member's softmax on ``rows`` from its checkpoint, scored by the reference."""
    return direct_scores(_member_probs(search, iteration, rows), labels)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_build_up_acquires_the_top_scores_of_the_unselected_pool(tmp_path, precision):
    """In both precisions, whatever the CPU: bf16 autocast is forced here (emulated, slowly, where
    the CPU has no bf16 instructions), and the reference predicts in the run's own precision."""
    config = _config(compare=["random", "full"], train={**BASE["train"], "precision": precision})
    search = Search(config, tmp_path / "run")
    result = search.run()
    counts = budget_counts(config.search.budgets, result.pool_size)
    assert result.pool_size == 600  # digits after the test split, limited to 600
    previous = None
    for i, k in enumerate(counts):
        table = _table(tmp_path / "run" / f"iter_{i:02d}" / "subset.parquet")
        assert len(table["index"]) == k == len(set(table["index"].tolist()))
        assert np.all(table["multiplicity"] == 1)
        if previous is not None:  # nested: each step keeps what it had and adds to it
            assert np.array_equal(table["index"][: len(previous)], previous)
            added = table["iteration"] == i
            selected = np.zeros(result.pool_size, bool)
            selected[previous] = True
            candidates = np.flatnonzero(~selected)
            reference = _reference_scores(search, i, candidates)["mutual_information"]
            full = np.full(result.pool_size, -np.inf)
            full[candidates] = reference
            # the same probabilities on both sides: what differs is the fixed-point sums and float32
            # logs of the statistics against float64 here, under 1e-6 nats (tests/test_stats.py)
            np.testing.assert_allclose(table["score"][added], full[table["index"][added]], atol=1e-6)
            # the added rows are the k best candidates by the reference scores (either side of a near-tie)
            threshold = np.sort(reference)[::-1][int(added.sum()) - 1]
            assert np.all(full[table["index"][added]] >= threshold - 1e-6)
            stats = EnsembleStats.load(tmp_path / "run" / f"iter_{i:02d}" / "stats.npz")
            assert _held(stats) == ["run_0/epoch_001", "run_0/epoch_002", "run_0/epoch_003"]
            assert np.array_equal(stats.member_counts > 0, ~selected)  # only the unselected pool is scored
            with np.load(tmp_path / "run" / f"iter_{i:02d}" / "votes.npz") as votes:  # the consensus study's input
                assert votes["names"].tolist() == _held(stats)
                assert np.array_equal(votes["rows"], candidates)
                assert np.array_equal(votes["votes"], np.argmax(_member_probs(search, i, candidates), axis=2))
        else:
            assert np.all(np.isnan(table["score"]))  # the random start
        previous = table["index"]
    final = _table(tmp_path / "run" / "subset.parquet")
    assert np.array_equal(final["index"], previous)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["variants"]) == {"build_up", "random", "full"}
    assert metrics["precision"] == {"acquisition": precision, "subset_model": precision}
    assert metrics["device"] == "cpu" and metrics["variants"]["full"]["precision"] == precision
    assert all(step["precision"] == precision for step in metrics["steps"])
    assert metrics["variants"]["full"]["subset_size"] == 600
    assert metrics["variants"]["random"]["subset_size"] == counts[-1]
    full_probs = np.load(tmp_path / "run" / "models" / "full" / "model_0" / "test_probs.npy")
    test_y = search.task.splits.test.y
    assert metrics["variants"]["full"]["test_accuracy"][0] == pytest.approx(np.mean(full_probs.argmax(1) == test_y))
    assert metrics["variants"]["full"]["test_accuracy"][0] > 0.5  # digits, 10 classes: chance is 0.1
    text = summary(result, config)
    assert "build_up" in text and "random" in text and "full" in text


@pytest.mark.parametrize(
    ("kind", "runs", "expected"),
    [
        ("seeds", 3, ["run_0/best", "run_1/best", "run_2/best"]),
        ("checkpoints", 1, ["run_0/epoch_002", "run_0/epoch_003"]),
        ("combined", 2, ["run_0/epoch_002", "run_0/epoch_003", "run_1/epoch_002", "run_1/epoch_003"]),
    ],
)
def test_ensemble_configurations(tmp_path, kind, runs, expected):
    config = _config(
        ensemble={"kind": kind, "runs": runs, "start": 2, "stop": 3},
        data={"validation_fraction": 0.1},
        search={"scheme": "compress", "budgets": [0.3], "function": "variation_ratios"},
    )
    search = Search(config, tmp_path / "run")
    search.run()
    stats = EnsembleStats.load(tmp_path / "run" / "iter_00" / "stats.npz")
    assert _held(stats) == expected
    n = len(search.task.pool)
    assert np.all(stats.member_counts == len(expected))  # compress scores all of L
    table = _table(tmp_path / "run" / "iter_00" / "subset.parquet")
    reference = _reference_scores(search, 0, np.arange(n))["variation_ratios"]
    np.testing.assert_allclose(table["score"], reference[table["index"]], atol=1e-12)
    k = round(0.3 * n)
    assert len(table["index"]) == k
    assert table["score"].min() >= np.sort(reference)[::-1][k - 1]
    if kind == "seeds":  # a member is the best validation epoch of its run
        for r in range(runs):
            record = json.loads((tmp_path / "run" / "iter_00" / "members" / f"run_{r}" / "done.json").read_text())
            accs = [h["val_accuracy"] for h in record["history"]]
            assert record["best_epoch"] == 1 + int(np.argmax(accs))
    seeds = {
        json.loads((tmp_path / "run" / "iter_00" / "members" / f"run_{r}" / "done.json").read_text())["history"][0][
            "train_loss"
        ]
        for r in range(runs)
    }
    assert len(seeds) == runs  # runs differ by seed


def test_pretrain_fine_tunes_the_ensemble_at_a_lower_rate(tmp_path):
    config = _config(search={"scheme": "pretrain", "budgets": [0.25, 0.5], "finetune_lr": 0.02})
    search = Search(config, tmp_path / "run")
    result = search.run()
    assert [len(_table(tmp_path / "run" / f"iter_{i:02d}" / "subset.parquet")["index"]) for i in (0, 1)] == [150, 300]
    record = json.loads((tmp_path / "run" / "models" / "pretrain" / "model_0" / "done.json").read_text())
    assert record["history"][0]["lr"] == pytest.approx(0.02)
    # the subset model starts from the ensemble's last checkpoint: its first epoch's loss is far below a fresh one's
    fresh = json.loads((tmp_path / "run" / "iter_00" / "members" / "run_0" / "done.json").read_text())
    assert record["history"][0]["train_loss"] < 0.8 * fresh["history"][0]["train_loss"]
    assert result.variants[0].name == "pretrain"
    # both budgets come from one scoring of all of L: the smaller subset is the head of the larger
    a = _table(tmp_path / "run" / "iter_00" / "subset.parquet")["index"]
    b = _table(tmp_path / "run" / "iter_01" / "subset.parquet")["index"]
    assert set(a) <= set(b)


def test_outlier_skip_sets_aside_the_top_scores(tmp_path):
    config = _config(search={"scheme": "compress", "budgets": [0.25], "skip_top": 0.25})
    search = Search(config, tmp_path / "run")
    search.run()
    n = len(search.task.pool)
    reference = _reference_scores(search, 0, np.arange(n))["mutual_information"]
    chosen = _table(tmp_path / "run" / "subset.parquet")["index"]
    ranked = np.sort(reference)[::-1]
    # ranks 25%..50% (0-based 150..299): the top 150 are outliers, the next 150 are chosen; a row on
    # either side of a near-tie (1e-6 nats: fixed point against float64) at either boundary is accepted
    assert len(chosen) == 150 == len(set(chosen.tolist()))
    assert reference[chosen].max() <= ranked[150] + 1e-6 and reference[chosen].min() >= ranked[299] - 1e-6
    inside = (reference < ranked[150] - 1e-6) & (reference > ranked[299] + 1e-6)
    assert set(np.flatnonzero(inside)) <= set(chosen.tolist())  # every row clearly inside the band is chosen


def test_error_count_uses_the_pool_labels(tmp_path):
    config = _config(search={"scheme": "compress", "budgets": [0.2], "function": "error_count"})
    search = Search(config, tmp_path / "run")
    search.run()
    n = len(search.task.pool)
    reference = _reference_scores(search, 0, np.arange(n), labels=search.task.splits.pool.y)["error_count"]
    table = _table(tmp_path / "run" / "subset.parquet")
    np.testing.assert_allclose(table["score"], reference[table["index"]], atol=1e-12)


def test_random_and_full_schemes(tmp_path):
    result = run_config(_config(search={"scheme": "random", "budgets": [0.1, 0.3]}), tmp_path / "random")
    a = _table(tmp_path / "random" / "iter_00" / "subset.parquet")
    b = _table(tmp_path / "random" / "iter_01" / "subset.parquet")
    assert len(a["index"]) == 60 and len(b["index"]) == 180 and np.array_equal(b["index"][:60], a["index"])
    assert b["iteration"].tolist() == [0] * 60 + [1] * 120
    assert not np.array_equal(np.sort(b["index"]), np.arange(180))  # not the first rows
    assert result.variants[0].size == 180
    full = run_config(_config(search={"scheme": "full", "budgets": [1.0]}), tmp_path / "full")
    assert np.array_equal(np.sort(_table(tmp_path / "full" / "subset.parquet")["index"]), np.arange(600))
    assert full.variants[0].size == 600


def test_subset_model_ensemble_accuracy_is_from_averaged_probabilities(tmp_path):
    config = _config(search={"scheme": "random", "budgets": [0.5]}, subset_model={"models": 3})
    result = run_config(config, tmp_path / "run")
    variant = result.variants[0]
    probs = [np.load(tmp_path / "run" / "models" / "random" / f"model_{k}" / "test_probs.npy") for k in range(3)]
    test_y = load_test_labels(config)
    assert variant.accuracies == pytest.approx([np.mean(p.argmax(1) == test_y) for p in probs])
    assert variant.ensemble_accuracy == pytest.approx(np.mean(np.mean(probs, axis=0).argmax(1) == test_y))
    assert len(set(variant.accuracies)) > 1 or len({p.tobytes() for p in probs}) == 3  # seeds differ


def load_test_labels(config):
    return load_splits(config).test.y


def test_multiset_subset_round_trips_and_expands(tmp_path):
    subset = Subset(np.array([4, 1, 9]), np.array([1, 3, 2]), np.array([0.5, np.nan, 0.25]), np.array([0, 1, 1]))
    assert subset.size == 6
    assert subset.training_rows().tolist() == [1, 1, 1, 4, 9, 9]  # ascending: the order chosen does not matter
    subset.write(tmp_path / "s.parquet")
    back = Subset.read(tmp_path / "s.parquet")
    assert back.index.tolist() == [4, 1, 9] and back.multiplicity.tolist() == [1, 3, 2]
    assert np.isnan(back.score[1]) and back.iteration.tolist() == [0, 1, 1]
    # the same multiset chosen in another order (scores that differ in their last bits) trains alike
    reordered = Subset(np.array([9, 4, 1]), np.array([2, 1, 3]), np.zeros(3), np.zeros(3, np.int64))
    assert np.array_equal(reordered.training_rows(), subset.training_rows())


def test_budget_past_the_pool_and_another_configs_run_dir_are_refused(tmp_path):
    with pytest.raises(InputError, match="exceeds the pool"):
        run_config(_config(search={"budgets": [100, 5000]}), tmp_path / "a")
    assert not (tmp_path / "a").exists()  # refused before anything is written
    run_config(_config(search={"scheme": "random", "budgets": [0.1]}), tmp_path / "b")
    with pytest.raises(InputError, match=r"another config \(search.budgets differs\)"):
        run_config(_config(search={"scheme": "random", "budgets": [0.2]}), tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "precious.txt").write_text("x")
    with pytest.raises(InputError, match="not a subsetsearch run directory"):
        run_config(_config(), tmp_path / "c")


def test_a_finished_run_is_not_redone(tmp_path):
    config = _config(search={"scheme": "build_up", "budgets": [0.2, 0.4]})
    run_config(config, tmp_path / "run")
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*.safetensors")}
    again = run_config(config, tmp_path / "run")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*.safetensors")} == stamps
    assert again.subset.size == 240


@pytest.mark.skipif(not datasets.FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is missing")
def test_fashion_mnist_slice_build_up_runs(tmp_path):
    config = _config(
        data={"dataset": "fashion_mnist", "limit": 800, "test_limit": 400},
        search={"budgets": [0.25, 0.5], "function": "variation_ratios"},
        compare=["random"],
    )
    result = run_config(config, tmp_path / "run")
    assert result.pool_size == 800 and result.subset.size == 400
    assert [v.name for v in result.variants] == ["build_up", "random"]
    assert all(v.accuracies[0] > 0.3 for v in result.variants)  # 10 classes; chance is 0.1


KILL_CONFIG = {
    **BASE,
    "ensemble": {"kind": "combined", "runs": 2, "start": 2, "stop": 3},
    "compare": ["random"],
    "subset_model": {"models": 2},
}


def _cli(config_path: Path, run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "subsetsearch.cli", "run", str(config_path), "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_sigkill_at_any_moment_resumes_to_the_same_subset(tmp_path):
    import yaml

    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump(KILL_CONFIG))
    whole = _cli(config_path, tmp_path / "whole")
    started = time.perf_counter()
    _, err = whole.communicate(timeout=300)
    duration = time.perf_counter() - started
    assert whole.returncode == 0, err.decode()
    expected = _table(tmp_path / "whole" / "subset.parquet")
    expected_metrics = json.loads((tmp_path / "whole" / "metrics.json").read_text())

    cut = tmp_path / "cut"
    kills = 0
    rng = np.random.default_rng(0)
    # kill at moments spread over the run: start-up, ensemble training, scoring, subset models
    for fraction in sorted(rng.uniform(0.15, 0.95, size=4)):
        process = _cli(config_path, cut)
        time.sleep(fraction * duration * 0.6)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.communicate(timeout=300)
    final = _cli(config_path, cut)
    _out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()
    assert kills >= 2
    got = _table(cut / "subset.parquet")
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    metrics = json.loads((cut / "metrics.json").read_text())
    for name, variant in expected_metrics["variants"].items():
        assert metrics["variants"][name]["test_accuracy"] == variant["test_accuracy"]
    votes_files = sorted((tmp_path / "whole").glob("iter_*/votes.npz"))
    assert len(votes_files) == 2  # the two acquisition steps
    for votes_path in votes_files:  # no member lost or doubled
        with np.load(votes_path) as a, np.load(cut / votes_path.parent.name / "votes.npz") as b:
            assert all(np.array_equal(a[key], b[key]) for key in ("rows", "names", "votes"))
    assert not list(cut.rglob("*.tmp"))  # temporaries of killed writes are swept on resume


def test_progress_bars_on_a_terminal_and_summary_on_stdout(tmp_path):
    import threading

    import yaml

    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump({**BASE, "search": {"budgets": [0.2, 0.4]}, "compare": ["random"]}))
    leader, follower = os.openpty()  # stderr is a terminal, as for a person at a shell
    shown = bytearray()

    def drain():
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "subsetsearch.cli", "run", str(config_path), "--run-dir", str(tmp_path / "r")],
            stdout=subprocess.PIPE, stderr=follower, text=True, check=False, timeout=300,
        )  # fmt: skip
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)
    assert done.returncode == 0
    assert b"epoch 3/3" in shown  # the training bar
    assert b"scoring: (member, shard) pairs" in shown  # the scoring bar
    lines = done.stdout.splitlines()
    assert len(lines) < 25  # one screen
    assert any(line.startswith("build_up") and "%" in line for line in lines)
    assert any(line.startswith("random") and "%" in line for line in lines)


@pytest.mark.parametrize("model", ["resnet10", "resnet18"])
def test_resnets_train_in_a_run_with_the_patience_schedule(tmp_path, model):
    config = _config(
        model={"name": model, "width": 4},
        train={"epochs": 3, "schedule": {"kind": "patience", "patience": 1}},
        data={"validation_fraction": 0.2, "limit": 300},
        ensemble={"kind": "seeds", "runs": 1},
        search={"scheme": "compress", "budgets": [0.5], "function": "entropy"},  # one member: entropy
    )
    result = run_config(config, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "iter_00" / "members" / "run_0" / "done.json").read_text())
    assert all("val_accuracy" in h for h in record["history"])
    assert result.subset.size == round(0.5 * result.pool_size)
    assert 55 <= 300 - result.pool_size <= 65  # ~20% of each class is held out of the pool for validation


def test_user_arrays_and_image_folders_run(tmp_path):
    from PIL import Image

    digits = datasets.load_digits_images()
    x = np.kron(digits.x[:300, 0], np.ones((2, 2), np.uint8))  # 16×16 images, [N, H, W]
    np.savez(tmp_path / "train.npz", x=x, y=digits.y[:300])
    np.savez(tmp_path / "test.npz", x=np.kron(digits.x[300:400, 0], np.ones((2, 2), np.uint8)), y=digits.y[300:400])
    config = _config(
        data={"dataset": "arrays", "path": str(tmp_path / "train.npz"), "test_path": str(tmp_path / "test.npz")},
        search={"scheme": "random", "budgets": [0.5]},
    )
    result = run_config(config, tmp_path / "arrays")
    assert result.pool_size == 300
    assert np.load(tmp_path / "arrays" / "models" / "random" / "model_0" / "test_probs.npy").shape == (100, 10)
    for i in range(60):
        folder = tmp_path / "images" / f"class_{digits.y[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(folder / f"{i}.png")
    config = _config(
        data={"dataset": "image_folder", "path": str(tmp_path / "images"), "test_fraction": 0.25},
        search={"scheme": "random", "budgets": [0.5]},
    )
    result = run_config(config, tmp_path / "folder")
    assert result.pool_size + len(load_test_labels(config)) == 60


def test_steps_all_trains_a_subset_model_and_a_random_baseline_per_step(tmp_path):
    config = _config(search={"scheme": "build_up", "budgets": [0.1, 0.2, 0.3]}, subset_model={"steps": "all"},
                     compare=["random", "full"])  # fmt: skip
    result = run_config(config, tmp_path / "run")
    sizes = {v.name: v.size for v in result.variants}
    # build_up's random start (step 0) is not evaluated: it is a random subset already
    assert sizes == {"build_up@iter_01": 120, "random@iter_01": 120, "build_up": 180, "random": 180, "full": 600}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["variants"]) == set(sizes)


def test_auto_duplication_on_a_classifier_scores_the_whole_pool(tmp_path):
    config = _config(search={"scheme": "auto_duplication", "budgets": [0.2, 0.4, 0.6]})
    search = Search(config, tmp_path / "run")
    result = search.run()
    n = result.pool_size
    counts = budget_counts(config.search.budgets, n)
    before = np.zeros(n)
    for i, k in enumerate(counts):
        table = _table(tmp_path / "run" / f"iter_{i:02d}" / "subset.parquet")
        after = np.bincount(table["index"], weights=table["multiplicity"], minlength=n)
        assert after.sum() == k and len(set(table["index"].tolist())) == len(table["index"])
        if i > 0:
            chosen = np.flatnonzero(after - before)
            assert np.all((after - before)[chosen] == 1) and len(chosen) == k - counts[i - 1]
            scores = _reference_scores(search, i, np.arange(n))["mutual_information"]
            # the top of the whole pool, already chosen rows included (either side of a near-tie)
            assert scores[chosen].min() >= scores[np.setdiff1d(np.arange(n), chosen)].max() - 1e-6
            metrics = json.loads((tmp_path / "run" / f"iter_{i:02d}" / "metrics.json").read_text())
            assert metrics["chosen_again"] == int(np.sum(before[chosen] > 0)) and metrics["scored"] == n
        before = after
    assert result.subset.training_rows().size == counts[-1]


def test_subset_add_counts_a_repeated_row_as_one_more_copy():
    subset = Subset.empty().add(np.array([3, 5]), np.array([0.1, 0.2]), 0)
    subset = subset.add(np.array([5, 7]), np.array([0.9, 0.4]), 1)
    assert subset.index.tolist() == [3, 5, 7] and subset.multiplicity.tolist() == [1, 2, 1]
    assert subset.score.tolist() == [0.1, 0.9, 0.4]  # the latest score
    assert subset.iteration.tolist() == [0, 0, 1]  # the step it first came in
    assert subset.multiplicity_counts() == {"1": 2, "2": 1, "3": 0, "4+": 0}
    assert sorted(subset.training_rows().tolist()) == [3, 5, 5, 7]
