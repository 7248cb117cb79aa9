"""`make demo`'s script end to end on real data (scikit-learn's digits), in a temporary directory."""

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow.csv
import pyarrow.parquet

DEMO = Path(__file__).resolve().parents[1] / "examples" / "digits_score_demo.py"


def test_demo_writes_a_subset_from_checkpoint_members(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("digits_score_demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.main(tmp_path)
    members = sorted((tmp_path / "members").glob("*.npy"))
    assert len(members) == demo.RUNS * len(demo.CHECKPOINTS) == 25
    subset = pyarrow.csv.read_csv(tmp_path / "subset.csv").to_pydict()
    scores = pyarrow.parquet.read_table(tmp_path / "scores.parquet").to_pydict()
    assert len(subset["index"]) == round(0.4 * 1257) == len(set(subset["index"]))
    assert np.all(np.diff(subset["score"]) <= 0)
    # the chosen rows are the best of the whole-pool scores written beside them
    np.testing.assert_allclose(np.sort(scores["score"])[::-1][:503], subset["score"])
    out = capsys.readouterr().out
    assert "active learning" in out and "random subset" in out and "full pool" in out


OWN_LOOP = Path(__file__).resolve().parents[1] / "examples" / "own_training_loop.py"


def test_the_own_training_loop_example_scores_in_the_loop_and_resumes(tmp_path, monkeypatch, capsys):
    from subsetsearch import EnsembleStats
    from subsetsearch.internal.ledger import Ledger

    spec = importlib.util.spec_from_file_location("own_training_loop", OWN_LOOP)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.setattr(example, "TRIALS", 1)
    results = example.main(tmp_path)
    stats = EnsembleStats.load(tmp_path / "pool_stats.npz")
    held = Ledger.of(stats.metadata).members
    assert held == [f"seed{s}/epoch_{e}" for s in range(example.RUNS) for e in example.SCORED]
    assert np.all(stats.member_counts == 10)
    subset = pyarrow.parquet.read_table(tmp_path / "subset.parquet").column("index").to_numpy()
    assert subset.size == round(0.4 * 1257) == np.unique(subset).size
    assert set(results) == {"subset", "random", "full"} and min(results.values()) > 0.8
    # run again: every member is held already, so none is added and the subset is the same
    monkeypatch.setattr(example, "RUNS", 1)
    example.main(tmp_path)
    assert Ledger.of(EnsembleStats.load(tmp_path / "pool_stats.npz").metadata).members == held
    again = pyarrow.parquet.read_table(tmp_path / "subset.parquet").column("index").to_numpy()
    np.testing.assert_array_equal(again, subset)
    assert "test accuracy" in capsys.readouterr().out
