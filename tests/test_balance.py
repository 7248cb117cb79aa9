"""Class balance of a subset against its pool (subsetsearch.balance), by hand."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from subsetsearch.balance import class_shares, imbalance_line, imbalanced_classes


def test_class_shares_count_multiplicity():
    labels = np.array([0, 1, 1, 2, 2, 2])
    # rows 0 (class 0) twice, row 1 (class 1) once, row 5 (class 2) once: 2/4, 1/4, 1/4
    shares = class_shares(labels, [0, 1, 5], multiplicity=[2, 1, 1], num_classes=4)
    np.testing.assert_allclose(shares, [0.5, 0.25, 0.25, 0.0])
    # detection: boxes per class of each image
    boxes = np.array([[1, 0], [0, 3], [2, 2]])
    np.testing.assert_allclose(class_shares(boxes, [0, 2], multiplicity=[1, 2]), [5 / 9, 4 / 9])  # (1+4, 0+4) / 9
    assert class_shares(labels, [], num_classes=3).tolist() == [0, 0, 0]


def test_classes_below_half_or_above_twice_their_pool_share_are_flagged_by_hand():
    labels = np.repeat([0, 1, 2, 3], [40, 30, 20, 10])  # pool shares 0.4, 0.3, 0.2, 0.1
    # a subset of 20: class 0 ×4 (0.2, exactly half: not below), class 1 ×2 (0.1 < 0.15: below),
    # class 2 ×9 (0.45 > 0.4: above twice), class 3 ×5 (0.25, 2.5×: above)
    rows = np.concatenate([np.arange(0, 4), np.arange(40, 42), np.arange(70, 79), np.arange(90, 95)])
    flags = imbalanced_classes(labels, rows)
    got = {s.label: (round(s.subset, 6), round(s.pool, 6), s.below) for s in flags}
    assert got == {1: (0.1, 0.3, True), 2: (0.45, 0.2, False), 3: (0.25, 0.1, False)}
    # ordered by how far off, by ratio: class 1 is 1/3 (log 1.10), class 3 is 2.5× (0.92), class 2 2.25× (0.81)
    assert [s.label for s in flags] == [1, 3, 2]
    line = imbalance_line(flags, ["a", "b", "c", "d"], limit=2)
    assert line.startswith(
        "'b' 10.0% of the subset against 30.0% of the pool (below half); "
        "'d' 25.0% of the subset against 10.0% of the pool (above twice) and 1 more."
    )
    assert "run guide" in line
    assert imbalance_line([]) == ""


def test_a_class_the_pool_lacks_is_never_flagged_and_multiplicity_counts():
    labels = np.array([0, 0, 2, 2])  # class 1 absent from the pool
    assert imbalanced_classes(labels, [0, 2]) == []
    flags = imbalanced_classes(labels, [0, 2], multiplicity=[5, 1])  # class 0: 5/6 of the subset against 1/2
    assert [(s.label, s.below) for s in flags] == [(2, True)]  # 1/6 < 1/4; 5/6 < 1 = twice 1/2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60), st.data())
def test_flags_agree_with_counting_each_class_directly(labels, data):
    labels = np.array(labels)
    rows = np.array(sorted(data.draw(st.sets(st.integers(0, len(labels) - 1), min_size=1))))
    flagged = {s.label for s in imbalanced_classes(labels, rows)}
    expected = set()
    for c in set(labels.tolist()):
        pool = np.mean(labels == c)
        subset = np.mean(labels[rows] == c)
        if subset < 0.5 * pool or subset > 2 * pool:
            expected.add(c)
    assert flagged == expected
