import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subsetsearch import select
from subsetsearch.selection import all_members_disagree


def test_top_k_best_first():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    np.testing.assert_array_equal(select(scores, 3), [1, 3, 2])


def test_exclude_by_indices_or_mask():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    np.testing.assert_array_equal(select(scores, 2, exclude=[1, 3]), [2, 4])
    mask = np.array([False, True, False, True, False])
    np.testing.assert_array_equal(select(scores, 2, exclude=mask), [2, 4])


def test_skip_top_sets_aside_the_highest():
    scores = np.arange(8, 0, -1, dtype=float)  # row 0 is best
    # 12.5% of 8 candidates = 1 outlier skipped: ranks 1..3 instead of 0..2
    np.testing.assert_array_equal(select(scores, 3, skip_top=0.125), [1, 2, 3])


def test_skip_top_the_papers_example():
    # CIFAR in the paper: 12.5% outliers, a 50% budget takes percentiles 37.5-87.5 instead of 50-100
    n = 800
    scores = np.random.default_rng(0).permutation(n).astype(float)  # distinct; rank r = score n-1-r
    chosen = select(scores, n // 2, skip_top=0.125)
    percentiles = 100 * np.sort(scores[chosen]) / n
    assert percentiles[0] == 37.5 and percentiles[-1] == 87.375


def test_skip_top_counts_only_candidates():
    scores = np.arange(10, 0, -1, dtype=float)
    # 5 candidates (rows 5..9); 20% of them = 1 skipped (row 5)
    np.testing.assert_array_equal(select(scores, 2, exclude=np.arange(5), skip_top=0.2), [6, 7])


def test_ties_are_broken_by_seed_not_position():
    scores = np.zeros(1000)
    labels = np.repeat(np.arange(10), 100)  # a class-sorted dataset, everything tied
    first = select(scores, 100, seed=0)
    assert not np.array_equal(np.sort(first), np.arange(100))
    np.testing.assert_array_equal(first, select(scores, 100, seed=0))  # reproducible
    assert not np.array_equal(np.sort(first), np.sort(select(scores, 100, seed=1)))
    per_class = np.bincount(labels[first], minlength=10)
    assert per_class.min() >= 2 and per_class.max() <= 25  # not one class swallowing the budget


def test_nan_only_allowed_at_excluded_rows():
    scores = np.array([np.nan, 0.2, 0.4])
    np.testing.assert_array_equal(select(scores, 2, exclude=[0]), [2, 1])
    with pytest.raises(ValueError, match="NaN"):
        select(scores, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 4}, "cannot select 4 rows: 3 candidates"),
        ({"k": 3, "skip_top": 0.5}, "1 of them skipped"),
        ({"k": -1}, "non-negative integer"),
        ({"k": 1.5}, "non-negative integer"),
        ({"k": 1, "skip_top": 1.0}, r"in \[0, 1\)"),
        ({"k": 1, "exclude": [3]}, "outside"),
        ({"k": 1, "exclude": np.array([True, False])}, "mask must have shape"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        select(np.array([0.1, 0.2, 0.3]), **kwargs)


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.integers(0, 5).map(float), min_size=1, max_size=60),
    data=st.data(),
)
def test_selection_properties(scores, data):
    scores = np.array(scores)
    n = scores.size
    exclude = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=n, unique=True)), dtype=np.int64)
    candidates = np.setdiff1d(np.arange(n), exclude)
    skip_top = data.draw(st.sampled_from([0.0, 0.125, 0.25]))
    skipped = int(skip_top * candidates.size)
    k = data.draw(st.integers(0, candidates.size - skipped))
    chosen = select(scores, k, exclude=exclude, skip_top=skip_top, seed=data.draw(st.integers(0, 10)))
    assert chosen.size == k and np.unique(chosen).size == k
    assert not np.isin(chosen, exclude).any()
    assert (np.diff(scores[chosen]) <= 0).all()  # best first
    # exactly `skipped` candidates rank above the chosen ones, the rest below
    rest = np.sort(scores[np.setdiff1d(candidates, chosen)])[::-1]
    if k:
        assert (rest[:skipped] >= scores[chosen].max()).all()
        assert (rest[skipped:] <= scores[chosen].min()).all()


def test_all_members_disagree_by_hand():
    # 4 rows, 3 classes. Row 0: 3 members on 3 classes; row 1: two of 3 on class 0; row 2: one
    # member only (nothing to disagree with); row 3: 2 members on classes 1 and 2.
    votes = np.array([[1, 1, 1], [2, 1, 0], [1, 0, 0], [0, 1, 1]])
    assert all_members_disagree(votes, np.array([3, 3, 1, 2])).tolist() == [True, False, False, True]
    # a row no member scored is no outlier
    assert all_members_disagree(np.zeros((1, 3), np.uint16), np.zeros(1, np.int64)).tolist() == [False]


@pytest.mark.parametrize(
    ("votes", "members"),
    [(np.ones((3, 2)), np.ones(2)), (np.ones(3), np.ones(3)), (np.ones((3, 2, 1)), np.ones(3))],
)
def test_all_members_disagree_refuses_shapes(votes, members):
    with pytest.raises(ValueError, match=r"vote_counts must be \(N, C\) and member_counts \(N,\)"):
        all_members_disagree(votes, members)


@settings(max_examples=60, deadline=None)
@given(
    members=st.integers(1, 6),
    rows=st.integers(1, 40),
    classes=st.integers(2, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_all_members_disagree_is_as_many_distinct_votes_as_members(members, rows, classes, seed):
    predicted = np.random.default_rng(seed).integers(0, classes, size=(members, rows))
    counts = np.stack([np.bincount(predicted[:, j], minlength=classes) for j in range(rows)])
    expected = [members >= 2 and len(set(predicted[:, j].tolist())) == members for j in range(rows)]
    assert all_members_disagree(counts, np.full(rows, members)).tolist() == expected
    if members > classes:  # pigeonholes: some class always holds two votes
        assert not any(expected)
