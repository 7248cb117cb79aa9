import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import random_members

from subsetsearch import ACQUISITION_FUNCTIONS, EnsembleStats, acquire


def accumulate(members: np.ndarray) -> EnsembleStats:
    _, n, c = members.shape
    stats = EnsembleStats(n, c)
    for member in members:
        stats.update(member)
    return stats


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 8),
    n=st.integers(1, 30),
    c=st.integers(2, 10),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_bounds(m, n, c, dtype, seed):
    rng = np.random.default_rng(seed)
    stats = accumulate(random_members(rng, m, n, c, dtype))
    labels = rng.integers(0, c, size=n)
    entropy = acquire(stats, "entropy")
    mutual_information = acquire(stats, "mutual_information")
    variation_ratios = acquire(stats, "variation_ratios")
    error_count = acquire(stats, "error_count", labels=labels)
    slack = 1e-6
    assert (mutual_information >= 0).all()
    assert (mutual_information <= entropy + slack).all()
    assert (entropy <= math.log(c) + slack).all()
    assert (variation_ratios >= 0).all()
    assert (variation_ratios <= 1 - 1 / c + slack).all()
    assert ((error_count >= 0) & (error_count <= 1)).all()
    if m == 1:  # a single member cannot disagree with itself
        np.testing.assert_array_equal(variation_ratios, 0.0)
        np.testing.assert_allclose(mutual_information, 0.0, atol=slack)


def test_unknown_function_lists_the_valid_ones():
    stats = accumulate(random_members(np.random.default_rng(0), 1, 3, 2))
    with pytest.raises(ValueError, match="choose one of: " + ", ".join(ACQUISITION_FUNCTIONS)):
        acquire(stats, "bald")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (None, "needs the labels"),
        (np.array([0, 1]), r"shape \(3,\)"),
        (np.array([0, 1, 2]), r"in \[0, 2\)"),
        (np.array([0, -1, 1]), r"in \[0, 2\)"),
        (np.array([0.0, 1.0, 1.0]), "integers"),
    ],
)
def test_error_count_label_checks(labels, message):
    stats = accumulate(random_members(np.random.default_rng(0), 2, 3, 2))
    with pytest.raises(ValueError, match=message):
        acquire(stats, "error_count", labels=labels)


def test_rows_without_members_score_nan():
    stats = EnsembleStats(4, 2)
    stats.update(np.array([[0.7, 0.3], [0.5, 0.5]]), index=[1, 3])
    for fn in ("entropy", "mutual_information", "variation_ratios"):
        scores = acquire(stats, fn)
        assert np.isnan(scores[[0, 2]]).all(), fn
        assert np.isfinite(scores[[1, 3]]).all(), fn


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 6), n=st.integers(1, 20), c=st.integers(2, 6), seed=st.integers(0, 2**32 - 1))
def test_arrays_in_arrays_out_match_the_textbook_formulas(m, n, c, seed):
    """acquire on an [M, N, C] array or a list of [N, C] arrays, in one call: the direct formulas."""
    from reference import direct_scores

    rng = np.random.default_rng(seed)
    members = random_members(rng, m, n, c, np.float64)
    labels = rng.integers(0, c, size=n)
    expected = direct_scores(members, labels)
    for given_as in (members, list(members)):
        for function in ACQUISITION_FUNCTIONS:
            got = acquire(given_as, function, labels=labels if function == "error_count" else None)
            # fixed-point sums (2**-30) and float32 logs against float64: well under 1e-6 nats
            np.testing.assert_allclose(got, expected[function], atol=1e-6, err_msg=function)


def test_logits_in_one_call_and_statistics_refuse_from_logits():
    logits = np.array([[[2.0, 0.0]], [[0.0, 2.0]]])  # two members, one sample
    scores = acquire(logits, "variation_ratios", from_logits=True)
    assert scores.tolist() == [0.5]
    with pytest.raises(ValueError, match="from_logits applies to arrays"):
        acquire(accumulate(np.full((1, 1, 2), 0.5)), "entropy", from_logits=True)
