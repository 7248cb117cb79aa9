"""Balance, coverage and direction through ``subsetsearch score`` and ``subsetsearch run``: what the
commands choose, against scores computed directly; what they record; what they refuse."""

from __future__ import annotations

import html
import json
import re
from fractions import Fraction

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from reference import direct_scores
from scoring import member_pool, read_table, run_cli
from test_run import _config

from subsetsearch.acquisition import acquire
from subsetsearch.errors import InputError
from subsetsearch.pipeline.run import summary
from subsetsearch.pipeline.search import Search
from subsetsearch.pipeline.seeds import Seed, derive_seed
from subsetsearch.selection import Coverage, select
from subsetsearch.stats import EnsembleStats

N, C, M = 120, 4, 5


@pytest.fixture
def pool(tmp_path):
    return member_pool(tmp_path, seed=3, shape=(M, N, C), name="member_{}.npy")


def proportional_quotas(counts: list[int], k: int) -> list[tuple[int, int]]:
    """Per class the (fewest, most) rows of a k-row budget in the pool's proportions by the largest
    remainder, from exact fractions: a class whose remainder ties with the last one taken may get
    either (the seeded order that breaks the tie is not what these tests check)."""
    total = sum(counts)
    shares = [Fraction(k * c, total) for c in counts]
    floors = [int(s) for s in shares]
    remainders = sorted((shares[i] - floors[i] for i in range(len(counts))), reverse=True)
    extra = k - sum(floors)
    cut = remainders[extra - 1] if extra else None
    after = remainders[extra] if extra < len(counts) else None
    out = []
    for i in range(len(counts)):
        r = shares[i] - floors[i]
        certain = (cut is not None and r > cut) or (r == cut and r != after)
        possible = cut is not None and r >= cut
        out.append((floors[i] + int(certain), floors[i] + int(possible)))
    return out


def assert_quotas(got: np.ndarray, counts: list[int], k: int) -> None:
    assert got.sum() == k
    for c, (fewest, most) in enumerate(proportional_quotas(counts, k)):
        assert fewest <= got[c] <= most, (c, got.tolist())


# ------------------------------------------------------------------ score
def test_balance_class_fills_each_quota_with_that_class_top(pool, capsys):
    tmp_path, paths, members, labels = pool
    out = tmp_path / "s.parquet"
    code, stdout, _ = run_cli(
        ["score", *paths, "-f", "entropy", "-b", "31", "--balance", "class", "--labels", str(tmp_path / "y.npy"),
         "-o", str(out)], capsys)  # fmt: skip
    assert code == 0
    chosen = np.array(read_table(out)["index"])
    scores = direct_scores(members, labels)["entropy"]
    counts = np.bincount(labels, minlength=C).tolist()
    quotas = [fewest for fewest, most in proportional_quotas(counts, 31)]
    assert quotas == [most for fewest, most in proportional_quotas(counts, 31)]  # no tie at the cut here
    for c in range(C):
        rows = np.flatnonzero(labels == c)
        top = rows[np.argsort(-scores[rows])[: quotas[c]]]
        assert sorted(chosen[labels[chosen] == c].tolist()) == sorted(top.tolist())
    assert "selection: highest scores first, per class in the pool's proportions" in stdout
    recorded = json.loads(pq.read_schema(out).metadata[b"subsetsearch.selection"])
    assert recorded == {
        "function": "entropy", "budget": "31", "seed": 0, "balance": "class", "coverage": None,
        "direction": "highest", "skip_top": 0.0,
    }  # fmt: skip


def test_direction_lowest_takes_the_lowest_scores_first(pool, capsys):
    tmp_path, paths, members, _ = pool
    out = tmp_path / "s.csv"
    assert run_cli(["score", *paths, "-f", "mutual_information", "-b", "12", "--direction", "lowest", "-o", str(out)],
                   capsys)[0] == 0  # fmt: skip
    table = read_table(out)
    scores = direct_scores(members)["mutual_information"]
    assert table["index"] == np.argsort(scores, kind="stable")[:12].tolist()  # lowest first, in that order
    np.testing.assert_allclose(table["score"], np.sort(scores)[:12], atol=1e-6)


def test_coverage_prunes_the_hardest_and_samples_every_stratum(pool, capsys):
    tmp_path, paths, members, _ = pool
    out, every = tmp_path / "s.parquet", tmp_path / "all.parquet"
    args = ["score", *paths, "-f", "entropy", "-b", "40", "--coverage", "4", "--prune-hardest", "0.1", "--seed", "5"]
    assert run_cli([*args, "-o", str(out), "--scores-out", str(every)], capsys)[0] == 0
    chosen = np.array(read_table(out)["index"])
    scores = direct_scores(members)["entropy"]
    # the 12 highest (10% of 120) are never chosen
    assert not set(np.argsort(-scores)[:12].tolist()) & set(chosen.tolist())
    # 4 equal-width strata of the 108 left: each gives min(its size, its even share), smallest first
    kept = np.argsort(-scores)[12:]
    low, high = scores[kept].min(), scores[kept].max()
    stratum = np.minimum(((scores[kept] - low) / ((high - low) / 4)).astype(int), 3)
    sizes = np.bincount(stratum, minlength=4)
    left, open_, expected = 40, int((sizes > 0).sum()), {}
    for s in sorted(range(4), key=lambda s: (sizes[s], s)):
        expected[s] = min(int(sizes[s]), left // open_)
        left -= expected[s]
        open_ -= 1
    got = np.bincount(stratum[np.isin(kept, chosen)], minlength=4)
    assert got.tolist() == [expected[s] for s in range(4)]
    # the wiring: the core select on the written scores, with the seed given
    written = np.array(read_table(every)["score"])
    same = select(written, 40, seed=5, coverage=Coverage(4, 0.1))
    assert sorted(same.tolist()) == sorted(chosen.tolist())
    recorded = json.loads(pq.read_schema(every).metadata[b"subsetsearch.selection"])
    assert recorded["coverage"] == {"strata": 4, "prune_hardest": 0.1} and recorded["seed"] == 5


def test_balance_on_disk_statistics_equals_in_memory(pool, capsys):
    tmp_path, paths, _, _ = pool
    common = [
        "-f",
        "entropy",
        "-b",
        "0.3",
        "--balance",
        "class",
        "--coverage",
        "3",
        "--labels",
        str(tmp_path / "y.npy"),
    ]
    assert run_cli(["score", *paths, *common, "-o", str(tmp_path / "a.csv")], capsys)[0] == 0
    assert run_cli(["score", *paths, *common, "--state", str(tmp_path / "state"), "-o", str(tmp_path / "b.csv")],
                   capsys)[0] == 0  # fmt: skip
    assert read_table(tmp_path / "a.csv") == read_table(tmp_path / "b.csv")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--balance", "class"], "--balance class needs --labels"),
        (["--balance", "kind", "--labels", "Y"], "unknown --balance 'kind'; choose one of: none, class"),
        (["--direction", "up"], "unknown --direction 'up'"),
        (["--prune-hardest", "0.1"], "--prune-hardest sets aside the hardest before coverage's strata; give --cover"),
        (["--coverage", "0"], "--coverage (the number of strata) must be an integer >= 1, got 0"),
        (["--coverage", "5", "--prune-hardest", "1"], "--prune-hardest must be a fraction in [0, 1), got 1"),
        (["--coverage", "5", "--direction", "lowest"], "--direction lowest changes nothing with --coverage"),
        (["--balance", "class", "--labels", "Y", "-b", "3"],
         "--balance class gives each of the 4 classes at least one sample, but --budget 3 is 3; raise the budget"),
        (["--coverage", "2", "--prune-hardest", "0.5", "-b", "61"],
         "--budget 61 asks for 61 samples, but 60 of the 120 candidates are left after --prune-hardest 0.5"),
        (["--coverage", "2", "--skip-top", "0.5", "--prune-hardest", "0.5", "-b", "31"],
         "30 of the 120 candidates are left after --skip-top 0.5 and --prune-hardest 0.5; lower the budget"),
    ],
)  # fmt: skip
def test_selection_options_that_cannot_apply_are_one_line(pool, capsys, options, message):
    tmp_path, paths, _, _ = pool
    options = [str(tmp_path / "y.npy") if o == "Y" else o for o in options]
    budget = [] if "-b" in options else ["-b", "10"]
    code, _, stderr = run_cli(["score", *paths, "-f", "entropy", *budget, *options, "-o", str(tmp_path / "s.csv")],
                                   capsys)  # fmt: skip
    assert code == 2
    assert message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.csv").exists()


def test_box_lists_refuse_balance_and_take_coverage(tmp_path, capsys):
    from test_score_boxes import make_pool

    annotations, members = make_pool(tmp_path, seed=0)
    base = ["score", *map(str, members), "--annotations", str(annotations), "-f", "entropy", "-b", "6"]
    code, _, stderr = run_cli([*base, "--balance", "class", "-o", str(tmp_path / "a.csv")], capsys)
    assert code == 2 and "--balance does not apply to --annotations (an image holds boxes of many classes" in stderr
    out = tmp_path / "b.parquet"
    assert run_cli([*base, "--direction", "lowest", "-o", str(out), "--scores-out", str(tmp_path / "all.csv")],
                   capsys)[0] == 0  # fmt: skip
    every = np.array(read_table(tmp_path / "all.csv")["score"])
    lowest = np.sort(every)[:6]
    np.testing.assert_allclose(np.sort(read_table(out)["score"]), lowest)
    assert json.loads(pq.read_schema(out).metadata[b"subsetsearch.selection"])["direction"] == "lowest"


# ------------------------------------------------------------------ run
def test_compress_selects_by_the_rule_from_its_own_statistics(tmp_path):
    config = _config(
        search={"scheme": "compress", "budgets": [0.3], "function": "entropy", "balance": "class",
                "coverage": {"strata": 5, "prune_hardest": 0.1}},
    )  # fmt: skip
    search = Search(config, tmp_path / "run")
    result = search.run()
    stats = EnsembleStats.load(tmp_path / "run" / "iter_00" / "stats.npz")
    labels = search.task.splits.pool.y
    expected = select(
        acquire(stats, "entropy"), result.subset.size, seed=derive_seed(config.seed, Seed.SELECT, 0),
        balance="class", labels=labels, coverage=Coverage(5, 0.1),
    )  # fmt: skip
    assert sorted(result.subset.index.tolist()) == sorted(expected.tolist())
    # per class the pool's proportion (largest remainder), not the plain top's skew
    counts = np.bincount(labels[result.subset.index], minlength=10)
    assert_quotas(counts, np.bincount(labels, minlength=10).tolist(), result.subset.size)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"][0]["selection"] == {
        "balance": "class", "coverage": {"strata": 5, "prune_hardest": 0.1}, "direction": "highest", "skip_top": 0.0,
    }  # fmt: skip
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["search"]
    assert (saved["balance"], saved["coverage"], saved["direction"]) == (
        "class", {"strata": 5, "prune_hardest": 0.1}, "highest",
    )  # fmt: skip
    assert "selection       coverage (5 strata, the highest 10% of scores pruned), per class" in summary(result, config)
    from subsetsearch.pipeline.report import build_report

    page = html.unescape(build_report(tmp_path / "run").html.read_text())  # the run table names the rule
    assert "coverage (5 strata, the highest 10% of scores pruned), per class in the pool's proportions" in page


def test_build_up_balances_every_step(tmp_path):
    config = _config(search={"scheme": "build_up", "budgets": [0.2, 0.4, 0.6], "balance": "class"})
    search = Search(config, tmp_path / "run")
    result = search.run()
    labels = search.task.splits.pool.y
    pool_counts = np.bincount(labels, minlength=10).tolist()
    steps = [s for s in result.steps if s.get("kind") == "acquisition"]
    assert len(steps) == 2
    for i, count in ((1, search.counts[1] - search.counts[0]), (2, search.counts[2] - search.counts[1])):
        rows = result.subset.index[result.subset.iteration == i]
        assert_quotas(np.bincount(labels[rows], minlength=10), pool_counts, count)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert all(s["selection"]["balance"] == "class" for s in metrics["steps"][1:])


def test_plain_rule_keeps_the_fingerprints_of_runs_from_before(tmp_path):
    search = Search(_config(), tmp_path / "run")
    search.task.prepare()
    assert "rule" not in search.acquisition_inputs(1)["search"]
    lowest = Search(_config(search={"direction": "lowest"}), tmp_path / "other")
    lowest.task.prepare()
    assert lowest.acquisition_inputs(1)["search"]["rule"]["direction"] == "lowest"


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"scheme": "random", "balance": "class"}, "search.balance: scheme random selects by no score; remove it"),
        ({"scheme": "full", "direction": "lowest"}, "search.direction: scheme full selects by no score"),
        ({"coverage": {"strata": 3}, "direction": "lowest"}, "search.direction: lowest changes nothing with"),
        ({"coverage": {"strata": 0}}, "search.coverage.strata"),
        ({"coverage": {"strata": 2, "prune_hardest": 1.0}}, "search.coverage.prune_hardest"),
        ({"balance": "classes"}, "search.balance"),
    ],
)
def test_run_refuses_selection_options_that_cannot_apply(search, message):
    with pytest.raises(InputError, match=re.escape(message)):
        _config(search={**search})


def test_run_refuses_balance_for_detection():
    from subsetsearch.pipeline.config import parse_config

    with pytest.raises(InputError, match=re.escape("search.balance: class needs one class per sample")):
        parse_config({"name": "d", "task": "detection", "search": {"budgets": [0.25, 0.5], "balance": "class"}})


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"budgets": [0.5, 0.505], "balance": "class"},
         "search.balance: class gives each of the 10 classes a sample in every selection, and the budgets [300, 303]"),
        ({"budgets": [0.5, 0.99], "coverage": {"strata": 2, "prune_hardest": 0.1}},
         "search.budgets: a selection of 294 samples from 300 candidates, but the outliers set aside"),
    ],
)  # fmt: skip
def test_run_refuses_budgets_the_rule_cannot_fill_before_writing(tmp_path, search, message):
    with pytest.raises(InputError, match=re.escape(message)):
        Search(_config(search=search), tmp_path / "run").run()
    assert not (tmp_path / "run").exists()


def test_auto_duplication_balances_its_multiset(tmp_path):
    """Rows chosen again count toward their class's quota: each step adds the pool's proportions,
    multiplicity included."""
    config = _config(search={"scheme": "auto_duplication", "budgets": [0.2, 0.4, 0.6], "balance": "class"})
    search = Search(config, tmp_path / "run")
    result = search.run()
    labels = search.task.splits.pool.y
    pool_counts = np.bincount(labels, minlength=10).tolist()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for i in (1, 2):
        rows = pq.read_table(tmp_path / "run" / f"iter_{i:02d}" / "subset.parquet").to_pydict()
        before = pq.read_table(tmp_path / "run" / f"iter_{i - 1:02d}" / "subset.parquet").to_pydict()
        added = np.zeros(10, int)
        np.add.at(added, labels[np.asarray(rows["index"])], np.asarray(rows["multiplicity"]))
        np.add.at(added, labels[np.asarray(before["index"])], -np.asarray(before["multiplicity"]))
        assert_quotas(added, pool_counts, search.counts[i] - search.counts[i - 1])
    assert result.subset.size == search.counts[-1]
    assert any(step.get("chosen_again", 0) > 0 for step in metrics["steps"][1:])  # a multiset indeed


def test_a_budget_the_disagreement_rule_leaves_too_few_for_names_both(tmp_path, capsys):
    """Rows 0-59: each of 3 members predicts another class (outliers); rows 60-119 agree."""
    paths = []
    for m in range(3):
        probs = np.full((N, C), 0.1)
        probs[:60, m] = 0.7  # member m votes class m on the first half
        probs[60:, 3] = 0.7
        np.save(tmp_path / f"m{m}.npy", probs)
        paths.append(str(tmp_path / f"m{m}.npy"))
    np.save(tmp_path / "y.npy", np.arange(N) % C)
    args = ["score", *paths, "-f", "entropy", "--skip-disagreement", "--labels", str(tmp_path / "y.npy")]
    code, _, stderr = run_cli([*args, "-b", "50", "--coverage", "2", "--prune-hardest", "0.2", "-o",
                               str(tmp_path / "s.csv")], capsys)  # fmt: skip
    assert code == 2
    assert (
        "--budget 50 asks for 50 samples, but 48 of the 60 candidates are left after --skip-disagreement left out "
        "60 on which every member predicts a different class and --prune-hardest 0.2; lower the budget" in stderr
    )
    assert not (tmp_path / "s.csv").exists()
    assert run_cli([*args, "-b", "48", "--coverage", "2", "--prune-hardest", "0.2", "--balance", "class", "-o",
                    str(tmp_path / "s.csv")], capsys)[0] == 0  # fmt: skip
    chosen = np.array(read_table(tmp_path / "s.csv")["index"])
    assert chosen.min() >= 60 and len(chosen) == 48  # no outlier; 12 of each class's 15 after pruning 3
    assert np.bincount(chosen % C, minlength=C).tolist() == [12, 12, 12, 12]
