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
import checkpoint_agreement
import peers
from summary_stats import difference, holm_adjusted, noninferiority_p, p_value, paired

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


def test_verdicts_table_pairs_by_seed_and_corrects_over_the_table(tmp_path, monkeypatch):
    monkeypatch.setattr(peers, "OPTIONS_RESULTS", tmp_path / "none.json")  # no selection-options variants
    ours = "build_up/mutual_information"
    records = []
    for seed, (mine, random, peer, full) in enumerate([(0.92, 0.90, 0.915, 0.91), (0.93, 0.91, 0.93, 0.92)]):
        records += [record(ours, 0.5, seed, mine, "logistic"), record("random", 0.5, seed, random, "logistic")]
        records += [record("el2n", 0.5, seed, peer, "logistic"), record("full", 1.0, seed, full, "logistic")]
    rows = peers.verdicts(records, "epochs", "logistic").splitlines()
    assert rows[0].startswith("learner logistic; ours is the build-up variant chosen on validation")
    assert "the 3 rows of this table" in rows[0]
    # vs random: +2, +2 points, sd 0: p 0, a win after Holm too
    assert f"| {ours} | random | 50% | +2.00 [+2.00, +2.00] (n=2) | <0.001 | <0.001 | wins |  |" in rows
    # vs el2n: +0.5, 0: mean +0.25, sd 0.3536, half = 12.706 * 0.3536 / sqrt 2 = 3.18 points; t = 1 on
    # 1 df (Cauchy): p = 2 * 1/4 = 0.5; Holm: the largest of 3 keeps its 1 * 0.5
    assert f"| {ours} | el2n | 50% | +0.25 [-2.93, +3.43] (n=2) | 0.500 | 0.500 | undecided |  |" in rows
    # vs full: +1, +1, sd 0: a win, and non-inferior (the only row of its family) with p 0
    assert (
        f"| {ours} | full | 50% | +1.00 [+1.00, +1.00] (n=2) | <0.001 | <0.001 | wins | <0.001: non-inferior |" in rows
    )
    assert peers.verdicts(records, "epochs", "resnet10") == ""


def test_holm_verdict_rule():
    d = {"n": 3, "mean": 0.01, "ci95": [0.001, 0.019]}
    assert peers.holm_verdict(d, 0.049) == "wins" and peers.holm_verdict({**d, "mean": -0.01}, 0.01) == "loses"
    assert peers.holm_verdict(d, 0.05) == "undecided"  # the raw interval excludes zero; the family's test does not
    assert peers.holm_verdict({"n": 3, "mean": 0.0, "ci95": [-0.004, 0.005]}, 0.9) == "ties"
    assert peers.holm_verdict(d, None) == "n < 2"
    assert peers.noninferior(0.0249) == "non-inferior" and peers.noninferior(0.025) == "not shown"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.5, 1.0), st.floats(0.5, 1.0)), min_size=2, max_size=10).filter(
        lambda pairs: np.std([x - y for x, y in pairs]) > 1e-6
    )
)
def test_p_value_is_scipys_paired_t_test(pairs):
    from scipy import stats

    a = {seed: x for seed, (x, _) in enumerate(pairs)}
    b = {seed: y for seed, (_, y) in enumerate(pairs)}
    reference = stats.ttest_rel([x for x, _ in pairs], [y for _, y in pairs]).pvalue
    assert p_value(paired(a, b)) == pytest.approx(reference, rel=1e-8, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.5, 1.0), st.floats(0.5, 1.0)), min_size=2, max_size=10).filter(
        lambda pairs: np.std([x - y for x, y in pairs]) > 1e-6
    ),
    st.sampled_from([0.0, 0.005, 0.01]),
)
def test_noninferiority_p_is_scipys_one_sided_test_and_matches_the_interval(pairs, margin):
    from scipy import stats

    diff = [x - y for x, y in pairs]
    d = paired({s: x for s, (x, _) in enumerate(pairs)}, {s: y for s, (_, y) in enumerate(pairs)})
    reference = stats.ttest_1samp(np.array(diff) + margin, 0.0, alternative="greater").pvalue
    got = noninferiority_p(d, margin)
    assert got == pytest.approx(reference, rel=1e-8, abs=1e-12)
    # below 2.5% one-sided exactly when the 95% interval's lower end clears -margin (away from the edge)
    if abs(d["ci95"][0] + margin) > 1e-9:
        assert (got < 0.025) == (d["ci95"][0] > -margin)


def test_p_values_by_hand():
    # differences 0.01, 0.03, 0.02: t = 0.02 / (0.01 / sqrt(3)) = 2 sqrt(3);
    # df 2: P(T > t) = (1 - t / sqrt(2 + t^2)) / 2
    d = paired({0: 0.91, 1: 0.93, 2: 0.92}, {0: 0.90, 1: 0.90, 2: 0.90})
    t = 2 * math.sqrt(3)
    assert p_value(d) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
    # margin 0.01: t = 0.03 / (0.01 / sqrt(3)) = 3 sqrt(3)
    t = 3 * math.sqrt(3)
    assert noninferiority_p(d, 0.01) == pytest.approx((1 - t / math.sqrt(2 + t * t)) / 2, rel=1e-9)
    # one seed: no test; no spread: decided by the mean alone
    assert p_value(paired({0: 0.9}, {0: 0.8})) is None and noninferiority_p(paired({0: 0.9}, {0: 0.8}), 0.005) is None
    flat = paired({0: 0.91, 1: 0.92}, {0: 0.90, 1: 0.91})  # both differences 0.01 (up to rounding)
    flat["sd"] = 0.0
    assert p_value(flat) == 0.0 and noninferiority_p(flat, 0.005) == 0.0


def test_holm_adjusted_keeps_missing_values_out_of_the_family():
    # the family is the two present values: 2 * 0.01, max(0.02, 1 * 0.04)
    assert holm_adjusted([0.04, None, 0.01]) == pytest.approx([0.04, None, 0.02])
    assert holm_adjusted([None]) == [None]


def test_checkpoint_agreement_by_hand():
    # 41 checkpoints 64 steps apart over 4 rows whose class is 0: checkpoint k gets row 3 wrong when
    # k is odd (error 1/4), the rest always right. One step apart (64) every pair differs on row 3:
    # agreement 3/4, disagreement 1/4 = the whole cap (1/4 + 0). An even number of steps apart the
    # pairs predict alike: agreement 1, disagreement 0 of a cap that is 0 (even pairs, left out) or 1/2.
    predicted = np.zeros((41, 4), dtype=np.int8)
    predicted[1::2, 3] = 1
    result = checkpoint_agreement.measure(predicted, np.zeros(4, dtype=np.int64))
    assert result["error"][:3] == [0.0, 0.25, 0.0]
    assert result["by_gap"]["64"] == {"agree": 0.75, "of_cap": 1.0, "pairs": 40}
    for gap in ("128", "256", "512", "1024", "2048"):
        assert result["by_gap"][gap]["agree"] == 1.0 and result["by_gap"][gap]["of_cap"] == 0.0
    assert result["by_gap"]["2048"]["pairs"] == 41 - 32
    # the 20 checkpoints 128 steps apart are the even ones: all agree on every row
    assert result["all_agree"] == 1.0
    predicted[38, 0] = 2  # checkpoint 38 (the 20th even one) differs on row 0: 3 of 4 rows agree
    assert checkpoint_agreement.measure(predicted, np.zeros(4, dtype=np.int64))["all_agree"] == 0.75


def test_search_costs_two_ways_by_hand():
    full_run = {0: 150.0}
    costs = {(0, peers.selection_name("compress/mutual_information", 0.5)): {"full_pool_train": 140.0, "score": 20.0}}

    def cost(method: str, search: float) -> tuple:
        return peers.search_costs(
            {"method": method, "seed": 0, "fraction": 0.5, "search_seconds": search}, full_run, costs
        )

    assert cost("dyn_unc", 49.0) == (199.0, 49.0)  # reads the full run: from scratch pays it too
    assert cost("variability@train", 2.0) == (152.0, 2.0)
    assert cost("el2n_x10", 300.0) == (450.0, 300.0)
    assert cost("build_up/mutual_information", 170.0) == (170.0, 170.0)  # reads no full run
    assert cost("compress/mutual_information", 166.0) == (166.0, 20.0)  # its own run; given one, it only scores
    assert cost("random", 0.0) == (0.0, 0.0)
    # a part not recorded is not guessed
    assert (
        peers.search_costs({"method": "compress/x", "seed": 0, "fraction": 0.25, "search_seconds": 1.0}, full_run, {})[
            1
        ]
        is None
    )
    assert (
        peers.search_costs({"method": "el2n", "seed": 3, "fraction": 0.25, "search_seconds": 1.0}, full_run, {})[0]
        is None
    )


def test_the_variant_is_chosen_on_validation_once_every_candidate_has_every_choice_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(peers, "OPTIONS_RESULTS", tmp_path / "none.json")
    candidates = [m for m in peers.methods() if m.startswith("build_up") and 0.25 in peers.fractions_of(m)]
    records = []
    for i, method in enumerate(candidates):
        for seed in peers.CHOICE_SEEDS:
            # validation best for the second candidate; test accuracy best for the first (it must not matter)
            val = 0.90 + (0.01 if i == 1 else 0.0)
            records.append({**record(method, 0.25, seed, 0.95 if i == 0 else 0.90), "validation_curve": [0.5, val]})
    assert peers.chosen_variant(records, 0.25) == candidates[1]
    assert peers.chosen_variant(records[:-1], 0.25) is None  # one candidate lacks a seed
    assert peers.chosen_variant(records, 0.5) is None  # nothing measured at 50%


def test_converge_records_of_the_old_cap_get_their_stop_reason():
    # patience 2: no gain for 2 epochs -> drop; a drop without gain for 4 epochs -> stop
    stopped = [0.80, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]  # drop after 4, no gain 5..8: stops after 8
    rising = [0.80 + 0.001 * e for e in range(20)]  # gains every epoch: only the cap ends it
    records = [
        {**record("random", 0.5, 0, 0.9), "budget": "converge", "epochs_trained": 8, "validation_curve": stopped},
        {**record("full", 1.0, 0, 0.9), "budget": "converge", "epochs_trained": 20, "validation_curve": rising},
    ]
    assert peers.migrate_converge(records, epochs=10) == 1
    assert records[0]["budget"] == "converge" and records[0]["stopped"] == "patience"
    assert records[1]["budget"] == "converge_capped" and records[1]["stopped"] == "cap"
    assert records[1]["cap_epochs"] == 20  # the old cap: 2 x 10 / 1.0
    assert peers.migrate_converge(records, epochs=10) == 0  # once only


def test_goals_by_hand(tmp_path, monkeypatch):
    monkeypatch.setattr(peers, "OPTIONS_RESULTS", tmp_path / "none.json")
    monkeypatch.setattr(peers, "chosen_variant", lambda records, fraction: "build_up/mutual_information")
    ours = "build_up/mutual_information"
    records = []
    for seed in range(5):
        wobble = 0.001 * (seed % 2)  # differences that vary a little: finite t statistics
        records.append(record("full", 1.0, seed, 0.910))
        for fraction in (0.25, 0.5):
            records.append(record(ours, fraction, seed, 0.905 + wobble))
            records.append(record("el2n", fraction, seed, 0.880))  # 2.5 points behind ours: a win
            # ours minus it: -0.2, +0.3, -0.2, +0.3, -0.2 points (mean 0): not ahead
            records.append(record("variability@train", fraction, seed, 0.907 - 0.004 * (seed % 2)))
        records.append(record(ours, 0.8, seed, 0.9095 + wobble))
    lines = peers.goals(records, "epochs").splitlines()
    ahead = next(line for line in lines if "ahead of every peer" in line)
    assert "**not met**" in ahead and "variability@train 25%" in ahead and "variability@train 50%" in ahead
    assert "el2n 25%" not in ahead.split("not ahead of:")[1]
    # against full: 0.905 + wobble - 0.910 at 50% (-0.46 on average: the interval reaches past -0.5),
    # 0.9095 + wobble - 0.910 at 80% (-0.01)
    inferior = next(line for line in lines if "non-inferior to full" in line)
    assert "**not met**" in inferior and "50% build_up/mutual_information" in inferior
    at_50, at_80 = inferior.split("(", 1)[1].split("; 80%")
    assert "-0.46 [-0.53, -0.39] (n=5)" in at_50 and at_50.endswith("not shown")  # the lower end is past -0.5
    assert "-0.01 [-0.08, +0.06] (n=5)" in at_80 and "non-inferior" in at_80
    # lift 50% by a point: both sizes clear the margin, and every peer is behind at both sizes
    lifted = [
        {**r, "test_accuracy": r["test_accuracy"] + 0.01} if r["method"] == ours and r["fraction"] in (0.25, 0.5) else r
        for r in records
    ]
    lines = peers.goals(lifted, "epochs").splitlines()
    assert "**met**" in next(line for line in lines if "ahead of every peer" in line)
    assert "**met**" in next(line for line in lines if "non-inferior to full" in line)


def test_the_cap_report_counts_how_each_run_stopped():
    def converge(method, fraction, seed, stopped, epochs, budget="converge"):
        return {
            **record(method, fraction, seed, 0.9),
            "budget": budget,
            "stopped": stopped,
            "epochs_trained": epochs,
            "cap_epochs": 60,
        }

    records = [
        converge("full", 1.0, 0, "patience", 31),
        converge("full", 1.0, 1, "cap", 60),
        converge("full", 1.0, 2, "cap", 20, budget="converge_capped"),  # the old cap; not retrained yet
    ]
    text = peers.caps(records)
    assert "| full | 100% | 1 | 1 | 0 | 31–60 | 60 |" in text
    assert "Cap hits: 1 of 2 runs" in text and "full 100% seed 2" in text and "**not measured**" in text
    records.append(converge("full", 1.0, 2, "patience", 40))
    assert "**not met**" in peers.caps(records)  # seed 1 still hit the cap
    records[1] = converge("full", 1.0, 1, "patience", 44)
    assert "Cap hits: 0 of 3 runs" in peers.caps(records) and "**met**" in peers.caps(records)


def test_selection_options_both_against_balance_pairs_cnn_small_records_only():
    import selection_options

    def record(method, seed, accuracy, learner="cnn_small", **extra):
        return {
            "method": method,
            "fraction": 0.25,
            "seed": seed,
            "learner": learner,
            "test_accuracy": accuracy,
            **extra,
        }

    both, alone = "build_up/mutual_information/balance+coverage", "build_up/mutual_information/balance"
    records = [record(alone, s, 0.880) for s in range(3)]
    # differences +1, +2, +3 points: mean +2.00, sd 1, half-width t_{0.975,2} / sqrt(3) = 2.48
    records += [record(both, s, 0.880 + (s + 1) / 100) for s in range(3)]
    records += [record(both, s, 0.5, learner="logistic") for s in range(3)]  # another learner: not paired
    records += [record(both, 0, 0.1, grid=True)]  # a grid point: not a seed's record
    half = T_975_DF2 / math.sqrt(3)
    rows = selection_options.both_against_balance(records)
    assert rows[-2] == f"| build_up/mutual_information | 25% | +2.00 [{2 - half:+.2f}, {2 + half:+.2f}] |"
    assert len([r for r in rows if r.startswith("| build_up/")]) == 1
    assert selection_options.both_against_balance([r for r in records if r["method"] == alone]) == []


def test_build_up_at_full_strength_against_as_before_by_hand():
    new, old = peers.STRENGTH_PAIRS[0]
    records = []
    for seed, (mine, theirs, seconds) in enumerate(
        [(0.905, 0.900, 150.0), (0.910, 0.905, 160.0), (0.915, 0.910, 170.0)]
    ):
        records.append({**record(new, 0.25, seed, mine), "search_seconds": seconds})
        records.append({**record(old, 0.25, seed, theirs), "search_seconds": 100.0})
    # a seed of the new variant alone: no pair, and its seconds stay out of the means
    records.append({**record(new, 0.25, 3, 0.99), "search_seconds": 1000.0})
    for seed, (mine, theirs) in enumerate([(0.912, 0.910), (0.908, 0.910)]):
        records.append({**record(new, 0.5, seed, mine), "search_seconds": 200.0})
        records.append({**record(old, 0.5, seed, theirs), "search_seconds": 160.0})
    lines = peers.strength(records).splitlines()
    assert "Holm over the 2 rows" in lines[0]
    # 25%: +0.5 points on each of 3 seeds (sd 0): p 0, a win; seconds 160 against 100 (seed 3 left out)
    assert (
        f"| {new} | {old} | epochs | 25% | +0.50 [+0.50, +0.50] (n=3) | <0.001 | <0.001 | wins | 160 | 100 | 1.60 |"
        in lines
    )
    # 50%: +0.2 and -0.2: mean 0, sd 0.2828, half = 12.706 * 0.2828 / sqrt 2 = 2.54; t = 0: p 1
    assert (
        f"| {new} | {old} | epochs | 50% | +0.00 [-2.54, +2.54] (n=2) | 1.000 | 1.000 | undecided | 200 | 160 | 1.25 |"
        in lines
    )
    assert len(lines) == 5  # no converge rows, no 80% row, no EL2N rows
    assert peers.strength([r for r in records if r["method"] == old]) == ""
    # EL2N over 10 initialisations against one joins the family: 3 rows, and Holm on the 50% row's p 1
    # stays 1 while the 25% win's p 0 stays 0
    el2n = [
        {**record(m, 0.5, s, 0.91 + 0.001 * s * (m == "el2n_x10")), "search_seconds": t}
        for s in range(3)
        for m, t in (("el2n_x10", 280.0), ("el2n", 10.0))
    ]
    lines = peers.strength(records + el2n).splitlines()
    assert "Holm over the 3 rows" in lines[0]
    # +0, +0.1, +0.2 points: mean +0.1, sd 0.1, half = 4.303 * 0.1 / sqrt 3 = 0.25; t = 1.732 on 2 df: p 0.225
    assert (
        "| el2n_x10 | el2n | epochs | 50% | +0.10 [-0.15, +0.35] (n=3) | 0.225 | 0.451 | ties | 280 | 10 | 28.00 |"
        in lines
    )


def test_cost_table_takes_full_seconds_over_the_rows_seeds(tmp_path, monkeypatch):
    monkeypatch.setattr(peers, "OPTIONS_RESULTS", tmp_path / "none.json")

    def timed(method, fraction, seed, train, search=0.0):
        return {**record(method, fraction, seed, 0.9), "train_seconds": train, "search_seconds": search}

    # full took 150 s on seeds 0-1 and 90 s on seeds 2-3 (a faster session); random's 80% has seeds 0-1
    records = [timed("full", 1.0, s, t) for s, t in enumerate((150.0, 150.0, 90.0, 90.0))]
    records += [timed("random", 0.8, s, 100.0) for s in (0, 1)]
    records += [timed("build_up/mutual_information", 0.8, s, 100.0, 200.0) for s in (0, 1)]
    lines = peers.table(records, "epochs", costs={}).splitlines()
    row = next(line for line in lines if line.startswith("| build_up/mutual_information | 80% |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # search 200, train 100, full 150 (its seeds 0-1, not 120 over all four): 200 + r * 100 < r * 150 from r = 5
    assert cells[5:] == ["200", "200", "100", "150", "5", "5"]
    assert next(line for line in lines if line.startswith("| full | 100% |")).split("|")[9].strip() == "120"
