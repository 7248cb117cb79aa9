"""Map-based acquisition (subsetsearch.detection) against a direct per-location computation."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import direct_heatmaps

from subsetsearch.detection import MapStats, acquire_maps, stream_image_scores


def random_maps(rng: np.random.Generator, m: int, n: int, k: int, h: int, w: int) -> np.ndarray:
    """Sigmoid-like maps with exact 0, 1 and 0.5 values mixed in."""
    maps = 1 / (1 + np.exp(-rng.normal(0, 3, size=(m, n, k, h, w))))
    special = rng.random(maps.shape)
    maps[special < 0.05] = 0.0
    maps[(special >= 0.05) & (special < 0.1)] = 1.0
    maps[(special >= 0.1) & (special < 0.15)] = 0.5
    return maps.astype(np.float32)


FUNCTIONS = ("entropy", "mutual_information", "variation_ratios", "error_count")


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(1, 6),
    n=st.integers(1, 5),
    k=st.integers(1, 4),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    fn=st.sampled_from(FUNCTIONS),
    seed=st.integers(0, 2**32 - 1),
)
def test_acquire_maps_matches_direct_computation(m, n, k, h, w, fn, seed):
    rng = np.random.default_rng(seed)
    maps = random_maps(rng, m, n, k, h, w)
    gt = rng.random((n, k, h, w)) < 0.2
    scores, heatmaps = acquire_maps(maps, fn, gt=gt if fn == "error_count" else None)
    expected = direct_heatmaps(maps, fn, gt)
    assert heatmaps.shape == (n, k, h, w)
    np.testing.assert_allclose(heatmaps, expected, atol=2e-6)
    np.testing.assert_allclose(scores, expected.reshape(n, -1).max(axis=1), atol=2e-6)


def test_hand_derived_values():
    # one image, one class, two locations, two members
    maps = np.array([[[[[0.9, 0.5]]]], [[[[0.1, 0.5]]]]])  # [M=2, n=1, K=1, H=1, W=2]
    _, heat = acquire_maps(maps, "variation_ratios")
    assert heat.ravel().tolist() == [0.5, 0.0]  # 0.9 votes object, 0.1 not; both 0.5 vote "no object"
    _, heat = acquire_maps(maps, "entropy")
    assert heat.ravel() == pytest.approx([np.log(2), np.log(2)])  # both means are 0.5
    _, heat = acquire_maps(maps, "mutual_information")
    h09 = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    assert heat.ravel() == pytest.approx([np.log(2) - h09, 0.0], abs=1e-9)
    scores, heat = acquire_maps(maps, "error_count", gt=np.array([[[[True, True]]]]))
    assert heat.ravel().tolist() == [0.5, 1.0]  # the second location: both members miss the object
    assert scores.tolist() == [1.0]


def test_image_score_is_max_over_classes_and_locations():
    maps = np.zeros((2, 3, 2, 2, 2))
    maps[0, 1, 1, 0, 1] = 1.0  # members disagree only at image 1, class 1, (0, 1)
    scores, heat = acquire_maps(maps, "variation_ratios")
    assert scores.tolist() == [0.0, 0.5, 0.0]
    assert np.argwhere(heat > 0).tolist() == [[1, 1, 0, 1]]


@settings(max_examples=20, deadline=None)
@given(
    m=st.integers(1, 5),
    n=st.integers(1, 40),
    chunk=st.integers(1, 17),
    fn=st.sampled_from(FUNCTIONS),
    seed=st.integers(0, 2**32 - 1),
)
def test_streaming_equals_batch(m, n, chunk, fn, seed):
    rng = np.random.default_rng(seed)
    maps = random_maps(rng, m, n, 3, 4, 5)
    gt = rng.random((n, 3, 4, 5)) < 0.1
    use_gt = gt if fn == "error_count" else None
    batch_scores, batch_heat = acquire_maps(maps, fn, gt=use_gt)
    order = rng.permutation(n)  # chunks in any order
    chunks = (
        (rows, (maps[j, rows] for j in range(m)), None if use_gt is None else gt[rows])
        for rows in (order[s : s + chunk] for s in range(0, n, chunk))
    )
    scores = np.full(n, np.nan)
    heat = np.full(batch_heat.shape, np.nan)
    for rows, image_scores, heatmaps in stream_image_scores(chunks, fn, num_images=n):
        scores[rows] = image_scores
        heat[rows] = heatmaps
    np.testing.assert_array_equal(scores, batch_scores)
    np.testing.assert_array_equal(heat, batch_heat)


def test_sequence_of_members_equals_stacked_array():
    rng = np.random.default_rng(0)
    maps = random_maps(rng, 4, 3, 2, 3, 3)
    stacked = acquire_maps(maps, "mutual_information")
    listed = acquire_maps(list(maps), "mutual_information")
    np.testing.assert_array_equal(stacked[1], listed[1])


def test_streaming_holds_one_member_at_a_time():
    """The generator of members is consumed lazily: never more than one member alive at once."""
    alive, peak = [], []

    def members():
        for j in range(3):
            alive.append(j)
            peak.append(len(alive))
            yield np.full((2, 1, 2, 2), 0.25 * (j + 1))
            alive.remove(j)

    results = list(stream_image_scores([(np.arange(2), members(), None)], "entropy", num_images=2))
    assert len(results) == 1 and not alive and max(peak) == 1 and len(peak) == 3
    assert results[0][1].tolist() == pytest.approx([np.log(2)] * 2)  # the mean map is 0.5 everywhere


@pytest.mark.parametrize(
    ("maps", "message"),
    [
        (np.full((2, 1, 1, 2, 2), 1.5), r"probabilities in \[0, 1\].*sigmoid"),
        (np.full((2, 1, 1, 2, 2), -0.1), r"probabilities in \[0, 1\]"),
        (np.full((2, 1, 1, 2, 2), np.nan), r"probabilities in \[0, 1\]"),
        (np.full((2, 1, 2, 2), 0.5), r"rank 5 \(M, n, K, H, W\).*\(2, 1, 2, 2\)"),
        (np.zeros((2, 1, 1, 2, 2), dtype=np.int64), "floating-point"),
        (np.zeros((0, 1, 1, 2, 2)), r"is empty.*at least one member"),
    ],
)
def test_bad_maps_raise_clear_errors(maps, message):
    with pytest.raises(ValueError, match=message):
        acquire_maps(maps, "entropy")


def test_bad_arguments():
    maps = np.full((2, 1, 1, 2, 2), 0.5)
    with pytest.raises(ValueError, match="unknown acquisition function 'bald'"):
        acquire_maps(maps, "bald")
    with pytest.raises(ValueError, match="error_count needs the ground-truth centre maps"):
        acquire_maps(maps, "error_count")
    with pytest.raises(ValueError, match=r"gt must have the maps' shape \(1, 1, 2, 2\)"):
        acquire_maps(maps, "error_count", gt=np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="binary centre map"):
        acquire_maps(maps, "error_count", gt=np.full((1, 1, 2, 2), 0.3))
    with pytest.raises(ValueError, match=r"maps must have shape \(1, 1, 2, 2\)"):
        acquire_maps([maps[0], np.full((1, 1, 2, 3), 0.5)], "entropy")
    stats = MapStats(1, 1, 2, 2)
    with pytest.raises(ValueError, match="no member has been added"):
        stats.scores("entropy")
    with pytest.raises(ValueError, match=r"chunk index must be a 1-D array of images in \[0, 2\)"):
        list(stream_image_scores([(np.array([5]), [np.full((1, 1, 2, 2), 0.5)], None)], "entropy", num_images=2))
    with pytest.raises(TypeError):  # options are keyword-only
        acquire_maps(maps, "error_count", np.zeros((1, 1, 2, 2), bool))
    with pytest.raises(TypeError):
        list(stream_image_scores([], "entropy", 2))


def test_core_imports_no_torch():
    code = (
        "import sys, subsetsearch, subsetsearch.detection, subsetsearch.stats, subsetsearch.acquisition, "
        "subsetsearch.selection; sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
