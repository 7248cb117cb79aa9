"""The statistics behind every verdict in the benchmark pages: paired differences with a 95%
t-interval (``benchmarks/summary_stats.py``), the win / tie / undecided / loss rule and the
break-even reuses of ``benchmarks/peers.py``. Values are derived by hand or by SciPy's paired
t-test, not by the code under test."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peers
from summary_stats import difference, paired

#: t_{0.975, 2} from a table of Student's t: the quantile of a two-sided 95% interval over 3 seeds.
T_975_DF2 = 4.302652729911275


def test_paired_by_hand_on_the_seeds_both_hold():
    # differences 0.01, 0.03, 0.02: mean 0.02, sd 0.01; seed 7 is only in `a` and is left out
    a = {0: 0.91, 1: 0.93, 2: 0.92, 7: 0.5}
    b = {0: 0.90, 1: 0.90, 2: 0.90}
    d = paired(a, b)
    assert d["seeds"] == [0, 1, 2] and d["n"] == 3
    assert d["mean"] == pytest.approx(0.02, abs=1e-12)
    assert d["sd"] == pytest.approx(0.01, abs=1e-12)
    half = T_975_DF2 * 0.01 / math.sqrt(3)  # 0.024841
    assert d["ci95"] == pytest.approx([0.02 - half, 0.02 + half], abs=1e-12)


def test_difference_text_in_points_by_hand():
    # the hand-derived case above: mean 0.02, interval 0.02 -+ 0.024841 -> +2.00 [-0.48, +4.48] points
    d = paired({0: 0.91, 1: 0.93, 2: 0.92}, {0: 0.90, 1: 0.90, 2: 0.90})
    assert difference(d) == "+2.00 [-0.48, +4.48]"
    assert difference(paired({0: 0.9}, {0: 0.8})) == "+10.00"  # one seed: no interval
    assert difference(paired({0: 0.9}, {1: 0.8})) == "-"  # no seed in common


def test_paired_with_one_seed_has_no_interval_and_with_none_no_mean():
    one = paired({0: 0.9}, {0: 0.8, 1: 0.7})
    assert one["n"] == 1 and one["mean"] == pytest.approx(0.1) and one["sd"] is None and one["ci95"] is None
    none = paired({0: 0.9}, {1: 0.8})
    assert none["n"] == 0 and none["mean"] is None and none["ci95"] is None


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.5, 1.0), st.floats(0.5, 1.0)),
        min_size=2,
        max_size=8,
    ).filter(lambda pairs: np.std([x - y for x, y in pairs]) > 1e-6)
)
def test_paired_interval_is_scipys_paired_t_interval(pairs):
    from scipy import stats

    a = {seed: x for seed, (x, _) in enumerate(pairs)}
    b = {seed: y for seed, (_, y) in enumerate(pairs)}
    reference = stats.ttest_rel([x for x, _ in pairs], [y for _, y in pairs]).confidence_interval(0.95)
    d = paired(a, b)
    assert d["ci95"] == pytest.approx([reference.low, reference.high], rel=1e-9, abs=1e-12)


def interval(low_points: float, high_points: float) -> dict:
    """A paired difference whose 95% interval is [low, high] points."""
    return {"n": 3, "mean": (low_points + high_points) / 200, "ci95": [low_points / 100, high_points / 100]}


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.10, 2.00, "wins"),  # excludes zero above, however wide
        (-2.00, -0.10, "loses"),
        (-0.40, 0.50, "ties"),  # the whole interval within ±0.5 points (the edge counts)
        (-0.50, 0.20, "ties"),
        (-0.40, 0.52, "undecided"),  # holds zero, reaches past +0.5: the epochs budget's 50% vs variability
        (-3.60, 4.28, "undecided"),  # the n=2 interval the old rule called a tie
    ],
)
def test_verdict_rule(low, high, expected):
    assert peers.TIE_POINTS == 0.5
    assert peers.verdict(interval(low, high)) == expected


def test_verdict_without_an_interval():
    assert peers.verdict({"n": 1, "mean": 0.01, "ci95": None}) == "n < 2"


@pytest.mark.parametrize(
    ("search", "subset", "full", "expected"),
    [
        (10.0, 4.0, 6.0, "6"),  # r=5: 10 + 20 = 30, not < 30; r=6: 34 < 36
        (9.0, 4.0, 6.0, "5"),  # r=5: 29 < 30
        (0.0, 1.0, 2.0, "1"),  # nothing to pay back
        (5.0, 6.0, 6.0, "never"),
        (5.0, 7.0, 6.0, "never"),
    ],
)
def test_break_even_by_hand(search, subset, full, expected):
    assert peers.break_even(search, subset, full) == expected


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 500), st.integers(1, 300), st.integers(1, 300))
def test_break_even_is_the_smallest_paying_reuse(search, subset, full):
    # integers: the inequality is exact, no float rounding at the boundary
    got = peers.break_even(float(search), float(subset), float(full))
    if subset >= full:
        assert got == "never"
        return
    r = 1
    while not search + r * subset < r * full:
        r += 1
    assert got == str(r)


def record(method: str, fraction: float, seed: int, accuracy: float, learner: str = "cnn_small") -> dict:
    return {
        "method": method,
        "fraction": fraction,
        "seed": seed,
        "budget": "epochs",
        "learner": learner,
        "test_accuracy": accuracy,
    }


def test_verdicts_table_pairs_by_seed_for_each_learner():
    ours = "build_up/mutual_information"
    records = []
    for seed, (mine, random, peer, full) in enumerate([(0.92, 0.90, 0.915, 0.91), (0.93, 0.91, 0.93, 0.92)]):
        records += [record(ours, 0.5, seed, mine, "logistic"), record("random", 0.5, seed, random, "logistic")]
        records += [record("el2n", 0.5, seed, peer, "logistic"), record("full", 1.0, seed, full, "logistic")]
    rows = peers.verdicts(records, "epochs", "logistic").splitlines()
    assert rows[0].startswith(f"| {ours}, learner logistic |")
    # vs random: +2, +2 points, sd 0: the interval is [+2, +2], a win
    assert "| vs random | 50% | +2.00 [+2.00, +2.00] (n=2) | wins |" in rows
    # vs el2n: +0.5, 0: mean +0.25, sd 0.3536, half = 12.706 * 0.3536 / sqrt 2 = 3.18 points
    assert any(row.startswith("| vs el2n | 50% | +0.25 [-2.93, +3.43] (n=2) | undecided |") for row in rows)
    assert "| vs full | 50% | +1.00 [+1.00, +1.00] (n=2) | wins |" in rows
    assert peers.verdicts(records, "epochs", "resnet10") == ""
