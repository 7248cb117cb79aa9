"""TrainingDynamics and the label-based and mean-based functions against direct formulas.

The references below compute each score from the whole [M, N, C] array in float64, the way its
paper defines it; the accumulator streams members and keeps fixed-point sums, so the two agree
within the fixed-point steps (2**-30 of a probability: 1e-6 is a loose bound).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import other_scores

from subsetsearch import EnsembleStats, acquire
from subsetsearch.acquisition import FUNCTIONS, NEEDS_LABELS
from subsetsearch.dynamics import DYNAMICS_FUNCTIONS, TrainingDynamics
from subsetsearch.stats import InvalidMemberError

ATOL = 1e-6


def fed(members, labels, *, window=2, ordered=True, **update) -> TrainingDynamics:
    dynamics = TrainingDynamics(labels, num_classes=np.shape(members)[2], window=window, ordered=ordered)
    for member in members:
        dynamics.update(np.asarray(member), **update)
    return dynamics


@st.composite
def ensembles(draw, min_members=1):
    m = draw(st.integers(min_members, 7))
    n = draw(st.integers(1, 6))
    c = draw(st.integers(2, 4))
    # a few levels only, so argmax ties and exact repeats happen often
    levels = st.sampled_from([0.0, 0.05, 0.25, 0.5, 1.0, 2.0])
    raw = np.array(draw(st.lists(levels, min_size=m * n * c, max_size=m * n * c))).reshape(m, n, c)
    raw[..., 0] += 1e-3 * (raw.sum(axis=2) == 0)  # no all-zero row
    members = (raw / raw.sum(axis=2, keepdims=True)).astype(np.float64)
    labels = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    return members, labels


# ------------------------------------------------------------------ formulas
@settings(max_examples=200, deadline=None)
@given(data=ensembles(min_members=2), dtype=st.sampled_from([np.float64, np.float32]), choice=st.data())
def test_every_label_function_matches_its_formula(data, dtype, choice):
    members, labels = data
    members = members.astype(dtype)
    window = choice.draw(st.integers(2, len(members)))
    dynamics = fed(members, labels, window=window)
    for function in DYNAMICS_FUNCTIONS:
        expected = other_scores(members, labels, function, window)
        np.testing.assert_allclose(dynamics.scores(function), expected, atol=ATOL, err_msg=function)
        # the array form of acquire gives the same
        np.testing.assert_allclose(
            acquire(members, function, labels=labels, window=window), expected, atol=ATOL, err_msg=function
        )


@settings(max_examples=150, deadline=None)
@given(data=ensembles())
def test_least_confidence_and_margin_match_their_formulas(data):
    members, labels = data
    stats = EnsembleStats.from_members(members)
    for function in ("least_confidence", "margin"):
        np.testing.assert_allclose(acquire(stats, function), other_scores(members, labels, function), atol=ATOL)


# ------------------------------------------------------------------ hand cases
def sequence(true_class_probabilities, label=0):
    """One row, two classes: member m gives the label probability q_m."""
    return np.array([[[q, 1 - q] if label == 0 else [1 - q, q]] for q in true_class_probabilities]), np.array([label])


def test_a_row_forgotten_twice():
    members, labels = sequence([0.9, 0.2, 0.8, 0.1, 0.3])  # right, wrong, right, wrong, wrong
    assert fed(members, labels).scores("forgetting").tolist() == [2.0]


def test_a_row_never_learned_scores_the_number_of_members():
    members, labels = sequence([0.1, 0.4, 0.2, 0.3])
    assert fed(members, labels).scores("forgetting").tolist() == [4.0]


def test_learned_and_never_forgotten_scores_zero():
    members, labels = sequence([0.2, 0.6, 0.7, 0.99])
    assert fed(members, labels).scores("forgetting").tolist() == [0.0]


def test_a_tie_goes_to_the_lowest_class():
    # [0.5, 0.5] votes class 0: right for label 0, wrong for label 1
    members = np.array([[[0.6, 0.4], [0.4, 0.6]], [[0.5, 0.5], [0.5, 0.5]]])
    labels = np.array([0, 1])
    assert fed(members, labels).scores("forgetting").tolist() == [0.0, 1.0]


def test_window_equal_to_the_members_is_one_window_the_variability():
    members, labels = sequence([0.9, 0.2, 0.8, 0.1])
    dynamics = fed(members, labels, window=4)
    np.testing.assert_allclose(dynamics.scores("dyn_unc"), dynamics.scores("variability"), atol=ATOL)
    # by hand: values 0.9, 0.2, 0.8, 0.1, mean 0.5, squared deviations 0.16 0.09 0.09 0.16
    np.testing.assert_allclose(dynamics.scores("variability"), [np.sqrt(0.5 / 4)], atol=ATOL)


def test_dyn_unc_window_of_two_by_hand():
    members, labels = sequence([0.9, 0.5, 0.5, 0.1])  # windows: |0.4|/2, 0, |0.4|/2 -> mean 0.4/3
    np.testing.assert_allclose(fed(members, labels, window=2).scores("dyn_unc"), [0.4 / 3], atol=ATOL)


def test_el2n_by_hand():
    # [0.6, 0.4] with label 1: sqrt(0.6**2 + 0.6**2); [0, 1]: 0
    members = np.array([[[0.6, 0.4]], [[0.0, 1.0]]])
    np.testing.assert_allclose(fed(members, np.array([1])).scores("el2n"), [np.sqrt(0.72) / 2], atol=ATOL)


@settings(max_examples=100, deadline=None)
@given(
    gap=st.floats(1e-9, 1e-2),
    classes=st.integers(2, 1000),
    spread=st.floats(0.0, 1.0),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_el2n_of_a_nearly_learned_row_keeps_its_precision(gap, classes, spread, dtype):
    # p_y = 1 - gap, the rest shared over the other classes, some unevenly. The bound of
    # member_terms' docstring, derived by hand: the rounded row q / T is within (C + sqrt C) 2**-31
    # of the exactly normalised row (x 2**30 rounded: 1/2 a class, its total: C/2; T >= 2**30
    # (1 - 1e-3)), the distance moves by no more (triangle inequality), and the stored distance
    # is rounded to 2**-31 once more: absolute, whatever the gap.
    others = np.linspace(1.0, 1.0 + spread * (classes - 2), classes - 1)
    row = np.concatenate([[1.0 - gap], gap * others / others.sum()]).astype(dtype)
    exact = row.astype(np.float64) / row.astype(np.float64).sum()
    target = np.zeros(classes)
    target[0] = 1.0
    expected = np.linalg.norm(exact - target)
    score = fed(row[None, None, :], np.array([0]), ordered=False).scores("el2n")[0]
    bound = ((classes + np.sqrt(classes)) / (1 - 1e-3) + 1) * 2.0**-31
    assert abs(score - expected) <= bound, (score, expected, bound)


def test_rows_no_member_scored_are_nan():
    dynamics = TrainingDynamics(np.array([0, 1, 0]), num_classes=2, window=2)
    for q in (0.9, 0.2):
        dynamics.update(np.array([[q, 1 - q]]), index=np.array([1]))
    for function in DYNAMICS_FUNCTIONS:
        scores = dynamics.scores(function)
        assert np.isnan(scores[[0, 2]]).all() and np.isfinite(scores[1]), function


# ------------------------------------------------------------------ chunks, shards, halves
@settings(max_examples=60, deadline=None)
@given(data=ensembles(min_members=2), choice=st.data())
def test_chunks_shards_and_halves_give_the_same_bits(data, choice):
    members, labels = data
    m, n, _ = members.shape
    window = choice.draw(st.integers(2, m))
    whole = fed(members, labels, window=window)

    # each member in row chunks, the chunks in any order
    cut = choice.draw(st.integers(0, n))
    order = choice.draw(st.permutations([slice(0, cut), slice(cut, n)]))
    chunked = TrainingDynamics(labels, num_classes=members.shape[2], window=window)
    for member in members:
        for rows in order:
            chunked.update(member[rows], index=rows)
    assert chunked.equals(whole)

    # row shards scored on their own, merged by index
    sharded = TrainingDynamics(labels, num_classes=members.shape[2], window=window)
    for rows in order:
        if rows.stop == rows.start:
            continue  # an empty shard is no shard
        part = fed(members[:, rows], labels[rows], window=window)
        sharded.merge(part, index=np.arange(n)[rows])
    assert sharded.equals(whole)

    # two halves of the member stream, joined in order
    split = choice.draw(st.integers(1, m - 1))
    first = fed(members[:split], labels, window=window)
    second = fed(members[split:], labels, window=window, position=None)
    second_positioned = TrainingDynamics(labels, num_classes=members.shape[2], window=window)
    for position, member in enumerate(members[split:], start=split):
        second_positioned.update(member, position=position)
    assert first.merge(second_positioned).equals(whole)
    # the same halves the other way round are refused
    with pytest.raises(ValueError, match="merge the earlier half first"):
        fed(members[split:], labels, window=window).merge(fed(members[:split], labels, window=window))
    del second


@settings(max_examples=60, deadline=None)
@given(data=ensembles(min_members=2), choice=st.data())
def test_order_free_accumulators_take_members_in_any_order(data, choice):
    members, labels = data
    permutation = choice.draw(st.permutations(range(len(members))))
    a = fed(members, labels, ordered=False)
    b = fed(members[list(permutation)], labels, ordered=False)
    assert a.equals(b)
    for function in ("el2n", "variability", "hard_to_learn"):
        np.testing.assert_array_equal(a.scores(function), b.scores(function))


# ------------------------------------------------------------------ bad input
def test_a_member_out_of_order_is_refused_and_nothing_changes():
    members, labels = sequence([0.9, 0.2, 0.8])
    dynamics = TrainingDynamics(labels, num_classes=2, window=2)
    dynamics.update(members[0], position=5)
    dynamics.update(members[1], position=7)
    before = TrainingDynamics(labels, num_classes=2, window=2)
    before.merge(dynamics)
    with pytest.raises(ValueError, match=r"position 6 comes after the member at position 7 of sample 0"):
        dynamics.update(members[2], position=6)
    assert dynamics.equals(before)


def test_a_window_larger_than_the_members_names_the_option():
    members, labels = sequence([0.9, 0.2, 0.8])
    with pytest.raises(ValueError, match=r"dyn_unc needs at least window=10 members per sample; some hold 3.*--window"):
        fed(members, labels, window=10).scores("dyn_unc")
    with pytest.raises(ValueError, match="window must be an integer >= 2"):
        TrainingDynamics(labels, num_classes=2, window=1)


def test_ordered_functions_of_an_order_free_accumulator_are_refused():
    members, labels = sequence([0.9, 0.2])
    with pytest.raises(ValueError, match="forgetting needs members in order"):
        fed(members, labels, ordered=False).scores("forgetting")


def test_label_functions_without_labels_name_the_function():
    members, _ = sequence([0.9, 0.2])
    for function in NEEDS_LABELS:
        with pytest.raises(ValueError, match=f"^{function} needs the labels of the pool"):
            acquire(members, function)
    with pytest.raises(ValueError, match="el2n needs each member's probability of the label"):
        acquire(EnsembleStats.from_members(members), "el2n")


def test_bad_probabilities_are_refused_and_nothing_changes():
    labels = np.array([0, 1])
    dynamics = TrainingDynamics(labels, num_classes=2, window=2)
    dynamics.update(np.array([[0.9, 0.1], [0.2, 0.8]]))
    before = dynamics.take(slice(None))
    with pytest.raises(InvalidMemberError, match="sample 1 contain NaN"):
        dynamics.update(np.array([[0.9, 0.1], [np.nan, 0.8]]))
    with pytest.raises(InvalidMemberError, match=r"sum to 1\.3"):
        dynamics.update(np.array([[0.9, 0.1], [0.5, 0.8]]))
    assert dynamics.equals(before)
    with pytest.raises(ValueError, match="labels must lie in"):
        TrainingDynamics(np.array([0, 2]), num_classes=2)


def test_logits_and_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 5, 3))
    labels = rng.integers(0, 3, size=5)
    from_logits = fed(logits, labels, window=3, from_logits=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    np.testing.assert_allclose(
        from_logits.scores("el2n"), other_scores(probabilities, labels, "el2n"), atol=1e-6
    )  # logits go through a float32 softmax: within 1e-6 still
    from_logits.metadata = {"held": ["a", "b"]}
    from_logits.save(tmp_path / "d.npz")
    again = TrainingDynamics.load(tmp_path / "d.npz")
    assert again.equals(from_logits) and again.metadata == {"held": ["a", "b"]}
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a saved TrainingDynamics file"):
        TrainingDynamics.load(tmp_path / "bad.npz")


def test_every_function_is_known_to_acquire():
    assert set(FUNCTIONS) == {
        "entropy", "mutual_information", "variation_ratios", "error_count", "least_confidence", "margin",
        "el2n", "forgetting", "dyn_unc", "variability", "hard_to_learn",
    }  # fmt: skip
