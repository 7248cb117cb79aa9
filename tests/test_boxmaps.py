"""Box-list acquisition (subsetsearch.boxmaps) against dense centre maps rendered cell by cell."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import direct_heatmaps

from subsetsearch.boxmaps import Boxes, box_image_scores, render_centres

FUNCTIONS = ("entropy", "mutual_information", "variation_ratios", "error_count")


def dense_maps(boxes: Boxes, sizes: np.ndarray, num_classes: int, stride: float) -> np.ndarray:
    """The module docstring's rule, one cell at a time: [n, K, G, G] with G the largest image's cells."""
    grid = math.ceil(sizes.max() / stride)
    out = np.zeros((len(sizes), num_classes, grid, grid))
    for b in range(len(boxes)):
        x0, y0, x1, y1 = boxes.xyxy[b] / stride
        gx, gy = math.floor((x0 + x1) / 2), math.floor((y0 + y1) / 2)
        sigma = max(0.5, min(x1 - x0, y1 - y0) / 6)
        r = math.ceil(3 * sigma)
        i = boxes.image[b]
        for v in range(math.ceil(sizes[i, 1] / stride)):
            for u in range(math.ceil(sizes[i, 0] / stride)):
                if abs(u - gx) <= r and abs(v - gy) <= r:
                    value = boxes.score[b] * math.exp(-((u - gx) ** 2 + (v - gy) ** 2) / (2 * sigma**2))
                    out[i, boxes.label[b], v, u] = max(out[i, boxes.label[b], v, u], value)
    return out


def dense_truth(truth: Boxes, sizes: np.ndarray, num_classes: int, stride: float) -> np.ndarray:
    grid = math.ceil(sizes.max() / stride)
    out = np.zeros((len(sizes), num_classes, grid, grid), dtype=bool)
    for b in range(len(truth)):
        x0, y0, x1, y1 = truth.xyxy[b]
        i = truth.image[b]
        u = min(math.floor((x0 + x1) / (2 * stride)), math.ceil(sizes[i, 0] / stride) - 1)
        v = min(math.floor((y0 + y1) / (2 * stride)), math.ceil(sizes[i, 1] / stride) - 1)
        out[i, truth.label[b], v, u] = True
    return out


def random_boxes(rng: np.random.Generator, count: int, sizes: np.ndarray, num_classes: int, scored: bool) -> Boxes:
    image = rng.integers(0, len(sizes), count)
    x0 = rng.uniform(-4, sizes[image, 0] + 2)
    y0 = rng.uniform(-4, sizes[image, 1] + 2)
    w, h = rng.uniform(0, 30, count), rng.uniform(0, 30, count)
    score = rng.choice([0.0, 0.5, 1.0, 0.3, 0.9], count) if scored else None
    if not scored:  # ground truth lies inside its image
        x0, y0 = np.clip(x0, 0, sizes[image, 0] - 1), np.clip(y0, 0, sizes[image, 1] - 1)
        w, h = np.minimum(w, sizes[image, 0] - x0), np.minimum(h, sizes[image, 1] - y0)
    return Boxes(image, rng.integers(0, num_classes, count), np.c_[x0, y0, x0 + w, y0 + h], score)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 4),
    n=st.integers(1, 4),
    k=st.integers(1, 3),
    boxes=st.integers(0, 6),
    stride=st.sampled_from([1.0, 2.5, 4.0, 8.0]),
    fn=st.sampled_from(FUNCTIONS),
    seed=st.integers(0, 2**32 - 1),
)
def test_image_scores_match_dense_maps_rendered_cell_by_cell(m, n, k, boxes, stride, fn, seed):
    rng = np.random.default_rng(seed)
    sizes = np.c_[rng.integers(1, 40, n), rng.integers(1, 40, n)]
    members = [random_boxes(rng, int(rng.integers(0, boxes + 1)), sizes, k, scored=True) for _ in range(m)]
    truth = random_boxes(rng, boxes, sizes, k, scored=False)
    maps = np.stack([dense_maps(b, sizes, k, stride) for b in members])
    gt = dense_truth(truth, sizes, k, stride)
    expected = direct_heatmaps(maps, fn, gt).reshape(n, -1).max(axis=1)
    got = box_image_scores(members, fn, image_sizes=sizes, num_classes=k, stride=stride, truth=truth)
    # EnsembleStats sums probabilities in fixed-point steps of 2**-30 (stats.py): a location's score
    # moves by a few such steps times |log p|, far below 1e-6 (test_detection.py's bound as well)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_hand_derived_rendering():
    # a 12x12 box centred at (10, 6) on a 32x16 image, stride 4: centre cell (2, 1); sigma = 3/6 = 0.5, r = 2
    keys, probs = render_centres(
        Boxes([0], [0], [[4.0, 0.0, 16.0, 12.0]], [0.8]), image_sizes=np.array([[32, 16]]), num_classes=1
    )
    grid = 8  # 32 / 4
    cells = {(int(key // grid), int(key % grid)): p for key, p in zip(keys, probs, strict=True)}
    # rows 0..3 exist (16 / 4), columns 0..4 lie within r = 2 of column 2
    assert sorted(cells) == [(v, u) for v in range(4) for u in range(5)]
    assert cells[(1, 2)] == pytest.approx(0.8)  # the peak is the box's score
    assert cells[(1, 3)] == pytest.approx(0.8 * math.exp(-2))  # one cell away: d^2 / (2 sigma^2) = 1 / 0.5
    assert cells[(3, 4)] == pytest.approx(0.8 * math.exp(-16))  # (2, 2) away: 8 / 0.5


def test_hand_derived_scores():
    sizes = np.array([[8, 8], [8, 8]])
    sure = Boxes([0], [0], [[0.0, 0.0, 4.0, 4.0]], [1.0])  # one cell at stride 4, p = 1 at cell (0, 0)
    doubt = Boxes([0], [0], [[0.0, 0.0, 4.0, 4.0]], [0.5])
    nothing = Boxes([], [], np.zeros((0, 4)), [])
    # entropy of the mean (0.75, 0.25) at the shared centre; image 1 has no box
    got = box_image_scores([sure, doubt], "entropy", image_sizes=sizes, num_classes=1)
    assert got[0] == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert got[1] == 0.0
    # 0.5 is "no object" (ties to the lowest class): the members disagree
    assert box_image_scores([sure, doubt], "variation_ratios", image_sizes=sizes, num_classes=1)[0] == 0.5
    # error count: image 1 has an object neither member found
    truth = Boxes([1], [0], [[0.0, 0.0, 8.0, 8.0]])
    got = box_image_scores([nothing, nothing], "error_count", image_sizes=sizes, num_classes=1, truth=truth)
    assert got.tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        (lambda: Boxes([0], [0], [[2.0, 0.0, 1.0, 1.0]], [0.5]), "x0 <= x1"),
        (lambda: Boxes([0], [0], [[0.0, 0.0, 1.0, 1.0]], [1.5]), "in \\[0, 1\\]"),
        (lambda: Boxes([0, 1], [0], [[0.0, 0.0, 1.0, 1.0]], [0.5]), "one entry per box"),
        (lambda: Boxes([0], [0], [[0.0, np.nan, 1.0, 1.0]], [0.5]), "finite"),
    ],
)
def test_bad_boxes_are_refused(boxes, message):
    with pytest.raises(ValueError, match=message):
        boxes()


def test_out_of_range_images_classes_and_functions_are_refused():
    sizes = np.array([[8, 8]])
    box = Boxes([1], [0], [[0.0, 0.0, 1.0, 1.0]], [0.5])
    with pytest.raises(ValueError, match="image indices"):
        box_image_scores([box], "entropy", image_sizes=sizes, num_classes=1)
    with pytest.raises(ValueError, match="classes must be in"):
        box_image_scores([Boxes([0], [2], [[0.0, 0.0, 1.0, 1.0]], [0.5])], "entropy", image_sizes=sizes, num_classes=2)
    with pytest.raises(ValueError, match="unknown acquisition function"):
        box_image_scores([box], "margin", image_sizes=sizes, num_classes=1)
    with pytest.raises(ValueError, match="ground-truth boxes"):
        box_image_scores([box], "error_count", image_sizes=sizes, num_classes=1)
