"""The synthetic detection set: boxes against the pixels, the long tail, seeds, and its splits."""

from __future__ import annotations

import numpy as np
import pytest
from reference import idx_bytes

from subsetsearch.train import canvas
from subsetsearch.train.data import LabeledImages


def blob_source(n_per_class: int = 20, value: int | None = None, seed: int = 0) -> LabeledImages:
    """28×28 items of every Fashion-MNIST class: a random filled rectangle each (or constant ``value``)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((10 * n_per_class, 1, 28, 28), dtype=np.uint8)
    for i in range(len(x)):
        y0, x0 = rng.integers(0, 10, size=2)
        y1, x1 = y0 + rng.integers(8, 18), x0 + rng.integers(8, 18)
        x[i, 0, y0:y1, x0:x1] = value if value is not None else rng.integers(60, 256)
    return LabeledImages(x, np.repeat(np.arange(10), n_per_class))


def test_boxes_are_the_exact_pixel_extent_of_their_objects():
    images = canvas.make_detection_images(blob_source(), 300, seed=1, clutter=0.0, noise=0.0)
    assert len(images.boxes) >= 300
    for i in range(len(images)):
        picture = images.x[i, 0]
        boxes, _ = images.boxes_of(i)
        covered = np.zeros_like(picture, dtype=bool)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            inside = picture[y0:y1, x0:x1]
            # tight: every edge row and column of the box holds ink of some object
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            covered[y0:y1, x0:x1] = True
        # complete: without clutter or noise, no ink lies outside every box
        assert not picture[~covered].any()


def test_objects_are_not_hidden_inside_each_other():
    images = canvas.make_detection_images(blob_source(), 300, seed=2, clutter=0.0, noise=0.0, max_overlap=0.2)
    for i in range(len(images)):
        boxes, _ = images.boxes_of(i)
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes[a], boxes[b]
                inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
                smaller = min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))
                assert inter <= 0.2 * smaller


def test_class_mix_is_long_tailed():
    images = canvas.make_detection_images(blob_source(), 5000, seed=3)
    counts = np.bincount(images.labels, minlength=5)
    assert counts.argmax() == 0 and counts.argmin() == 4
    assert counts.max() / counts.min() >= 20
    # several objects per image, at several scales
    per_image = np.bincount(images.image_index, minlength=len(images))
    assert per_image.min() >= 1 and per_image.max() == 4 and per_image.mean() > 2
    sides = np.sqrt((images.boxes[:, 2] - images.boxes[:, 0]) * (images.boxes[:, 3] - images.boxes[:, 1]))
    assert sides.min() < 8 and sides.max() > 18  # blobs of 8-17 of 28 pixels scaled 10-36 pixels


def test_same_seed_same_images_other_seed_other_images():
    source = blob_source()
    a = canvas.make_detection_images(source, 50, seed=7)
    b = canvas.make_detection_images(source, 50, seed=7)
    c = canvas.make_detection_images(source, 50, seed=8)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.x, c.x)


def test_labels_come_from_their_source_classes():
    """Each box's pixels come from an item of the Fashion-MNIST class that stands for its label."""
    x = np.zeros((10, 1, 28, 28), dtype=np.uint8)
    for c in range(10):
        x[c, 0, 4:24, 4:24] = 100 + 10 * c  # class c draws value 100 + 10c
    source = LabeledImages(x, np.arange(10))
    images = canvas.make_detection_images(source, 200, seed=4, clutter=0.0, noise=0.0, max_overlap=0.0)
    for i in range(len(images)):
        boxes, labels = images.boxes_of(i)
        for (x0, y0, x1, y1), label in zip(boxes, labels, strict=True):
            inked = images.x[i, 0, y0:y1, x0:x1]
            assert inked.max() == 100 + 10 * canvas.SOURCE_CLASSES[label]


def test_train_and_test_canvases_use_fashion_mnists_own_split(tmp_path):
    train = blob_source(value=200, seed=5)
    test = blob_source(value=90, seed=6)
    for prefix, part in (("train", train), ("t10k", test)):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(part.x[:, 0]))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(part.y))
    train_images, test_images = canvas.load_fashion_detection(100, 40, seed=0, directory=str(tmp_path), noise=0.0)
    assert len(train_images) == 100 and len(test_images) == 40
    assert set(np.unique(train_images.x)) <= {0, *range(canvas.INK_THRESHOLD, 201)} and train_images.x.max() == 200
    assert test_images.x.max() == 90


def test_take_renumbers_images_and_keeps_their_boxes():
    images = canvas.make_detection_images(blob_source(), 20, seed=9)
    part = images.take(np.array([5, 2]))
    assert np.array_equal(part.x, images.x[[5, 2]])
    for new, old in ((0, 5), (1, 2)):
        assert np.array_equal(part.boxes_of(new)[0], images.boxes_of(old)[0])
        assert np.array_equal(part.boxes_of(new)[1], images.boxes_of(old)[1])


def test_resize_matrix_rows_sum_to_one_and_keep_a_constant():
    for size in (5, 10, 28, 36):
        matrix = canvas.resize_matrix(size)
        assert matrix.shape == (size, 28)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    constant = np.full((28, 28), 77.0)
    a = canvas.resize_matrix(13)
    np.testing.assert_allclose(a @ constant @ a.T, 77.0)


def test_bad_scale_is_refused():
    with pytest.raises(ValueError, match="scale"):
        canvas.make_detection_images(blob_source(), 5, seed=0, scale=(30, 20))


# -- sequence mode: clips of near-copy frames ------------------------------------------------------


def test_sequence_boxes_are_exact_and_objects_keep_their_class_and_size_within_a_clip():
    clip_length, speed = 6, 2.0
    frames = canvas.make_detection_sequences(
        blob_source(), 60, seed=1, clip_length=clip_length, speed=speed, clutter=0.0, noise=0.0
    )
    assert frames.clip.tolist() == [i // clip_length for i in range(60)]
    for i in range(len(frames)):
        picture = frames.x[i, 0]
        boxes, _ = frames.boxes_of(i)
        covered = np.zeros_like(picture, dtype=bool)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            covered[y0:y1, x0:x1] = True
        assert not picture[~covered].any()  # no ink outside every box
    for c in range(60 // clip_length):
        first_boxes, first_labels = frames.boxes_of(c * clip_length)
        for t in range(1, clip_length):
            boxes, labels = frames.boxes_of(c * clip_length + t)
            previous, _ = frames.boxes_of(c * clip_length + t - 1)
            assert labels.tolist() == first_labels.tolist()  # the same objects, in the same order
            # the same size; each frame moves a box by at most the speed (plus rounding) per axis
            np.testing.assert_array_equal(boxes[:, 2:] - boxes[:, :2], first_boxes[:, 2:] - first_boxes[:, :2])
            assert np.abs(boxes - previous).max() <= np.ceil(speed) + 1


def test_still_clips_repeat_their_first_frame_and_moving_ones_are_near_copies():
    still = canvas.make_detection_sequences(blob_source(), 16, seed=2, clip_length=8, speed=0.0, background_change=0.0)
    for t in range(8):  # no motion and no background change: eight copies of each first frame
        np.testing.assert_array_equal(still.x[t], still.x[0])
        np.testing.assert_array_equal(still.x[8 + t], still.x[8])
    assert not np.array_equal(still.x[0], still.x[8])
    moving = canvas.make_detection_sequences(blob_source(), 400, seed=3, clip_length=8)
    x = moving.x.astype(np.int64)
    within = np.abs(x[1:] - x[:-1])[moving.clip[1:] == moving.clip[:-1]].mean()
    across = np.abs(x[8::8] - x[:-8:8]).mean()  # first frames of neighbouring clips
    assert within < across / 2


def test_sequence_classes_are_long_tailed_and_seeded():
    a = canvas.make_detection_sequences(blob_source(), 4000, seed=4, clip_length=4)
    counts = np.bincount(a.labels, minlength=5)
    assert counts.argmax() == 0 and counts.argmin() == 4 and counts.max() / counts.min() >= 10
    b = canvas.make_detection_sequences(blob_source(), 4000, seed=4, clip_length=4)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.boxes, b.boxes)
    taken = a.take(np.array([5, 2]))
    assert taken.clip.tolist() == [1, 0]
