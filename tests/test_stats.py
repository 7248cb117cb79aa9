import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import direct_scores, random_members

import subsetsearch.stats as stats_module
from subsetsearch import EnsembleStats, acquire

FUNCTIONS = ("entropy", "mutual_information", "variation_ratios", "error_count")


def snapshot(stats: EnsembleStats) -> tuple:
    return tuple(a.copy() for a in (stats.probability_sums, stats.entropy_sums, stats.vote_counts, stats.member_counts))


def assert_same_state(a: EnsembleStats, b: EnsembleStats) -> None:
    for x, y in zip(snapshot(a), snapshot(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.equals(b) and b.equals(a)


def test_two_members_by_hand():
    # p1 = (0.9, 0.1), p2 = (0.1, 0.9): p̄ = (1/2, 1/2)
    stats = EnsembleStats(num_samples=1, num_classes=2)
    stats.update(np.array([[0.9, 0.1]]))
    stats.update(np.array([[0.1, 0.9]]))
    h_member = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))  # 0.325083
    assert acquire(stats, "entropy")[0] == pytest.approx(math.log(2), abs=1e-8)
    assert acquire(stats, "mutual_information")[0] == pytest.approx(math.log(2) - h_member, abs=1e-8)
    assert acquire(stats, "variation_ratios")[0] == 0.5
    assert acquire(stats, "error_count", labels=np.array([0]))[0] == 0.5
    np.testing.assert_array_equal(stats.member_counts, [2])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_votes_by_hand_with_ties_to_lowest_class(dtype):
    stats = EnsembleStats(num_samples=2, num_classes=3)
    # row 0 votes: 0, 0 (tie between 0 and 1 goes to 0), 2;  row 1: all three tie -> class 0
    stats.update(np.array([[0.6, 0.2, 0.2], [1 / 3, 1 / 3, 1 / 3]], dtype=dtype))
    stats.update(np.array([[0.4, 0.4, 0.2], [1 / 3, 1 / 3, 1 / 3]], dtype=dtype))
    stats.update(np.array([[0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3]], dtype=dtype))
    np.testing.assert_array_equal(stats.vote_counts, [[2, 0, 1], [3, 0, 0]])
    np.testing.assert_allclose(acquire(stats, "variation_ratios"), [1 / 3, 0.0])
    np.testing.assert_allclose(acquire(stats, "error_count", labels=np.array([2, 1])), [2 / 3, 1.0])
    # identical members: no disagreement, entropy of the shared prediction
    tolerance = 1e-8 if dtype == np.float64 else 1e-6  # float16/32 inputs: the float32 log path
    assert acquire(stats, "mutual_information")[1] == pytest.approx(0.0, abs=tolerance)
    assert acquire(stats, "entropy")[1] == pytest.approx(math.log(3), abs=tolerance)


def test_one_hot_members_by_hand():
    # members say class 0, 1, 1, 1: p̄ = (1/4, 3/4); members are certain, so MI = H[p̄]
    stats = EnsembleStats(num_samples=1, num_classes=2)
    for row in ([1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]):
        stats.update(np.array([row], dtype=np.float32))
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert acquire(stats, "entropy")[0] == pytest.approx(expected, abs=1e-8)
    assert acquire(stats, "mutual_information")[0] == pytest.approx(expected, abs=1e-8)
    assert acquire(stats, "variation_ratios")[0] == 0.25


@pytest.mark.parametrize(("dtype", "tolerance"), [(np.float64, 1e-7), (np.float32, 1e-5), (np.float16, 1e-5)])
def test_matches_direct_computation(dtype, tolerance):
    rng = np.random.default_rng(1)
    members = random_members(rng, m=7, n=300, c=10, dtype=dtype)
    labels = rng.integers(0, 10, size=300)
    stats = EnsembleStats(num_samples=300, num_classes=10)
    for member in members:
        stats.update(member)
    expected = direct_scores(members, labels)
    for fn in FUNCTIONS:
        np.testing.assert_allclose(acquire(stats, fn, labels=labels), expected[fn], atol=tolerance, err_msg=fn)


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 6),
    n=st.integers(1, 40),
    c=st.integers(2, 12),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_direct_computation_property(m, n, c, dtype, seed):
    rng = np.random.default_rng(seed)
    members = random_members(rng, m, n, c, dtype)
    labels = rng.integers(0, c, size=n)
    stats = EnsembleStats(num_samples=n, num_classes=c)
    for member in members:
        stats.update(member)
    expected = direct_scores(members, labels)
    tolerance = 1e-7 if dtype == np.float64 else 1e-5
    for fn in FUNCTIONS:
        np.testing.assert_allclose(acquire(stats, fn, labels=labels), expected[fn], atol=tolerance, err_msg=fn)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 60), c=st.integers(2, 8), m=st.integers(1, 4), data=st.data())
def test_chunks_in_any_order_equal_whole_members(n, c, m, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    members = random_members(rng, m, n, c)
    whole = EnsembleStats(n, c)
    for member in members:
        whole.update(member)
    chunked = EnsembleStats(n, c)
    pieces = []
    for member in members:
        order = np.array(data.draw(st.permutations(range(n))))
        cuts = sorted(data.draw(st.lists(st.integers(1, n - 1), max_size=4, unique=True)))
        pieces += [(member, part) for part in np.split(order, cuts)]
    for index in data.draw(st.permutations(range(len(pieces)))):
        member, part = pieces[index]
        chunked.update(member[part], index=part)
    assert_same_state(whole, chunked)


def test_layout_of_the_input_does_not_matter():
    rng = np.random.default_rng(9)
    member = random_members(rng, 1, 60, 5)[0]
    contiguous, fortran, strided = EnsembleStats(60, 5), EnsembleStats(60, 5), EnsembleStats(60, 5)
    contiguous.update(member)
    fortran.update(np.asfortranarray(member))
    wide = np.zeros((60, 10), dtype=member.dtype)
    wide[:, ::2] = member
    strided.update(wide[:, ::2])  # every other column of a larger array
    assert_same_state(contiguous, fortran)
    assert_same_state(contiguous, strided)


def test_slice_index_equals_array_index():
    rng = np.random.default_rng(2)
    member = random_members(rng, 1, 50, 4)[0]
    a, b = EnsembleStats(50, 4), EnsembleStats(50, 4)
    a.update(member[10:30], index=slice(10, 30))
    b.update(member[10:30], index=np.arange(10, 30))
    assert_same_state(a, b)
    np.testing.assert_array_equal(a.member_counts, [0] * 10 + [1] * 20 + [0] * 20)


def test_merge_is_exact_and_associative():
    rng = np.random.default_rng(3)
    members = random_members(rng, 9, 80, 6)
    single = EnsembleStats(80, 6)
    parts = [EnsembleStats(80, 6) for _ in range(3)]
    for i, member in enumerate(members):
        single.update(member)
        parts[i % 3].update(member)

    def copy(stats):
        return EnsembleStats(80, 6).merge(stats)

    left = copy(parts[0]).merge(copy(parts[1])).merge(copy(parts[2]))
    right = copy(parts[0]).merge(copy(parts[1]).merge(copy(parts[2])))
    reordered = copy(parts[2]).merge(copy(parts[0])).merge(copy(parts[1]))
    for merged in (left, right, reordered):
        assert_same_state(single, merged)


def test_merge_rejects_other_shapes():
    with pytest.raises(ValueError, match="cannot merge"):
        EnsembleStats(3, 2).merge(EnsembleStats(4, 2))


def test_memory_does_not_grow_with_members():
    stats = EnsembleStats(100, 5)
    size = sum(a.nbytes for a in snapshot(stats))
    rng = np.random.default_rng(4)
    for member in random_members(rng, 50, 100, 5):
        stats.update(member)
    assert sum(a.nbytes for a in snapshot(stats)) == size


def test_votes_widen_before_overflow_in_merge():
    stats = EnsembleStats(1, 2)
    stats.update(np.array([[0.2, 0.8]]))
    for _ in range(17):  # 2**17 = 131,072 members, beyond uint16
        stats.merge(stats)
    assert stats.vote_counts.dtype == np.uint32
    np.testing.assert_array_equal(stats.vote_counts, [[0, 2**17]])
    assert acquire(stats, "variation_ratios")[0] == 0.0


def test_votes_widen_before_overflow_in_update(tmp_path):
    # a saved state with 65,535 members, every vote for class 1: the next vote would wrap uint16
    path = tmp_path / "state.npz"
    np.savez(
        path,
        format_version=np.int64(1),
        sum_fixed=np.array([[0, 65535 * 2**30]], dtype=np.int64),
        entropy_fixed=np.zeros(1, dtype=np.int64),
        votes=np.array([[0, 65535]], dtype=np.uint16),
        counts=np.array([65535], dtype=np.int64),
        metadata=np.array("{}"),
    )
    stats = EnsembleStats.load(path)
    stats.update(np.array([[0.0, 1.0]]))
    np.testing.assert_array_equal(stats.vote_counts, [[0, 65536]])


def test_logits_use_a_stable_softmax():
    logits = np.array([[1000.0, 0.0, -1000.0], [2.0, 1.0, 0.0]], dtype=np.float32)
    stats = EnsembleStats(2, 3)
    stats.update(logits, from_logits=True)
    e = np.exp([2.0, 1.0, 0.0])
    expected = np.array([[1.0, 0.0, 0.0], e / e.sum()])
    np.testing.assert_allclose(stats.mean_probs(), expected, atol=1e-7)
    h = -(expected[1] * np.log(expected[1])).sum()
    np.testing.assert_allclose(stats.mean_member_entropy(), [0.0, h], atol=1e-6)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([0.5, np.nan, 0.5], "NaN"),
        ([0.5, np.inf, 0.5], "NaN or inf"),
        ([1.2, -0.2, 0.0], "negative"),
        ([0.5, 0.2, 0.2], "from_logits"),
    ],
)
def test_bad_probabilities_leave_stats_untouched(row, message, monkeypatch):
    monkeypatch.setattr(stats_module, "_BLOCK_ELEMENTS", 12)  # 4 rows a block: the bad row is in block 3
    rng = np.random.default_rng(5)
    stats = EnsembleStats(12, 3)
    stats.update(random_members(rng, 1, 12, 3)[0])
    before = snapshot(stats)
    bad = random_members(rng, 1, 12, 3, np.float64)[0]
    bad[9] = row
    with pytest.raises(ValueError, match=message) as error:
        stats.update(bad)
    assert "sample 9" in str(error.value)
    for x, y in zip(before, snapshot(stats), strict=True):
        np.testing.assert_array_equal(x, y)


def test_non_finite_logits_are_rejected():
    stats = EnsembleStats(2, 2)
    with pytest.raises(ValueError, match="logits of sample 1 are not finite"):
        stats.update(np.array([[0.0, 1.0], [np.nan, 0.0]]), from_logits=True)
    assert stats.member_counts.sum() == 0


@pytest.mark.parametrize(
    ("probs", "index", "message"),
    [
        (np.full((3, 2), 0.5), None, "pool has 4"),
        (np.full((4, 3), 1 / 3), None, r"shape \(n, 2\)"),
        (np.full((4, 2), 1, dtype=np.int64), None, "float16, float32 or float64"),
        (np.full((2, 2), 0.5), [0, 0], "repeats a row"),
        (np.full((2, 2), 0.5), [0, 4], "outside"),
        (np.full((2, 2), 0.5), [0, 1, 2], "selects 3 rows"),
    ],
)
def test_bad_shapes_and_indices(probs, index, message):
    with pytest.raises(ValueError, match=message):
        EnsembleStats(4, 2).update(probs, index=index)


@pytest.mark.parametrize(("n", "c"), [(0, 2), (3, 1), (2.5, 2)])
def test_bad_sizes(n, c):
    with pytest.raises(ValueError, match="must be an integer"):
        EnsembleStats(n, c)


def test_save_and_load_continue_exactly(tmp_path):
    rng = np.random.default_rng(6)
    members = random_members(rng, 4, 30, 5)
    uninterrupted = EnsembleStats(30, 5)
    for member in members:
        uninterrupted.update(member)
    first = EnsembleStats(30, 5)
    first.update(members[0])
    first.update(members[1])
    first.metadata = {"members": ["a", "b"]}
    first.save(tmp_path / "stats.npz")
    resumed = EnsembleStats.load(tmp_path / "stats.npz")
    assert resumed.metadata == {"members": ["a", "b"]}
    resumed.update(members[2])
    resumed.update(members[3])
    assert_same_state(uninterrupted, resumed)
    assert [p.name for p in tmp_path.iterdir()] == ["stats.npz"]  # no temporary left behind


def test_load_rejects_other_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a saved EnsembleStats"):
        EnsembleStats.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a saved EnsembleStats"):
        EnsembleStats.load(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="not found"):
        EnsembleStats.load(tmp_path / "missing.npz")


def test_update_members_equals_one_update_each(monkeypatch):
    monkeypatch.setattr(stats_module, "_BLOCK_ELEMENTS", 40)  # 10 rows a block: several blocks
    rng = np.random.default_rng(7)
    members = random_members(rng, 5, 47, 4)
    one_by_one, together = EnsembleStats(47, 4), EnsembleStats(47, 4)
    for member in members:
        one_by_one.update(member)
    together.update_members(list(members))
    assert_same_state(one_by_one, together)


def test_update_members_adds_all_or_none(monkeypatch):
    monkeypatch.setattr(stats_module, "_BLOCK_ELEMENTS", 40)
    rng = np.random.default_rng(8)
    members = list(random_members(rng, 4, 47, 4, np.float64))
    members[2] = members[2].copy()
    members[2][33] = [0.5, 0.5, 0.5, -0.5]  # sums to 1 but is negative, in block 4 of member 2
    stats = EnsembleStats(47, 4)
    stats.update(members[0])
    before = snapshot(stats)
    with pytest.raises(stats_module.InvalidMemberError, match="sample 33") as error:
        stats.update_members(members)
    assert error.value.member == 2
    for x, y in zip(before, snapshot(stats), strict=True):
        np.testing.assert_array_equal(x, y)


# -- the public constructors, comparison and keyword-only options ------------------------------------


def test_from_arrays_rebuilds_the_statistics_it_is_given():
    rng = np.random.default_rng(11)
    stats = EnsembleStats(20, 4)
    for member in random_members(rng, 3, 20, 4):
        stats.update(member)
    again = EnsembleStats.from_arrays(*snapshot(stats), metadata={"note": 1})
    assert again.equals(stats) and again.metadata == {"note": 1}
    # p̄ by hand from the sums: probability_sums are multiples of 2**-30
    np.testing.assert_array_equal(again.mean_probs(), stats.probability_sums / (3 * 2.0**30))
    for name, bad in [
        ("probability_sums", (np.zeros((20, 1), np.int64), *snapshot(stats)[1:])),
        ("votes", (*snapshot(stats)[:2], np.zeros((20, 4), np.int64), snapshot(stats)[3])),
        ("member_counts", (*snapshot(stats)[:3], np.zeros(19, np.int64))),
    ]:
        with pytest.raises(ValueError, match="inconsistent EnsembleStats arrays"):
            EnsembleStats.from_arrays(*bad)
        assert name


@pytest.mark.parametrize("position", [0, 1, 2, 3])
def test_equals_sees_a_change_in_any_array(position):
    """A change in any one array is seen; statistics can differ in their votes alone only by a vote
    moved to another class, and in their member counts not at all (the votes count the members:
    ``from_arrays`` refuses counts that disagree with them)."""
    rng = np.random.default_rng(12)
    stats = EnsembleStats(6, 3)
    stats.update(random_members(rng, 1, 6, 3)[0])
    arrays = list(snapshot(stats))
    arrays[position] = arrays[position].copy()
    if position == 2:
        voted = int(np.argmax(arrays[2][1]))
        arrays[2][1, voted] -= 1
        arrays[2][1, (voted + 1) % 3] += 1
    else:
        arrays[position].reshape(-1)[4] += 1
    if position == 3:
        with pytest.raises(ValueError, match="row 4 holds votes adding up to 1, but 2 members"):
            EnsembleStats.from_arrays(*arrays)
    else:
        assert not EnsembleStats.from_arrays(*arrays).equals(stats)
    assert EnsembleStats.from_arrays(*snapshot(stats)).equals(stats)
    assert not stats.equals("not statistics")


def test_from_members_of_a_stacked_array_or_a_list_equals_streaming():
    rng = np.random.default_rng(13)
    members = random_members(rng, 20, 30, 5)  # more than one pass of 16 members
    streamed = EnsembleStats(30, 5)
    for member in members:
        streamed.update(member)
    assert EnsembleStats.from_members(members).equals(streamed)
    assert EnsembleStats.from_members(list(members)).equals(streamed)
    soft = random_members(rng, 3, 30, 5, np.float64, one_hot=False)
    from_probs = EnsembleStats.from_members(soft)
    from_logits = EnsembleStats.from_members(np.log(soft) + 7.0, from_logits=True)  # softmax(log p + k) = p
    np.testing.assert_allclose(from_logits.mean_probs(), from_probs.mean_probs(), atol=1e-8)
    with pytest.raises(ValueError, match=r"shape \(M, N, C\)"):
        EnsembleStats.from_members(members[0])
    with pytest.raises(ValueError, match="members is empty"):
        EnsembleStats.from_members([])


def test_options_are_keyword_only():
    stats = EnsembleStats(4, 2)
    probs = np.full((2, 2), 0.5)
    with pytest.raises(TypeError):
        stats.update(probs, [0, 1])  # index must be named
    with pytest.raises(TypeError):
        stats.update_members([probs], [0, 1])
    with pytest.raises(TypeError):
        stats.merge(EnsembleStats(2, 2), [0, 1])
    with pytest.raises(TypeError):
        acquire(stats, "error_count", np.zeros(4, np.int64))
    stats.update(probs, index=[0, 1])
    stats.merge(EnsembleStats(2, 2), index=[2, 3])
    assert stats.member_counts.tolist() == [1, 1, 0, 0]
