"""The detector's targets, loss, decoding and metrics against hand-derived values; it learns a toy set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from subsetsearch.train import canvas, detector, trainer
from subsetsearch.train.data import FASHION_MNIST_DIR
from subsetsearch.train.detection_metrics import evaluate_detections, weighted_map
from subsetsearch.train.models import build_model
from subsetsearch.train.settings import ModelConfig, TrainConfig


def test_targets_of_one_box_by_hand():
    # box x 8..24, y 12..20 on a 64 canvas: cells x 2..6, y 3..5 -> centre (4, 4), size (4, 2)
    t = detector.encode_targets(np.array([[8, 12, 24, 20]]), np.array([2]), np.array([0]), 1, 5, 64)
    assert t.heat.shape == (1, 5, 16, 16)
    assert t.heat[0, 2, 4, 4] == 1.0 and t.heat[0, [0, 1, 3, 4]].max() == 0
    # sigma = max(0.5, 2 / 6) = 0.5: one cell away exp(-1 / (2 * 0.25)) = exp(-2)
    assert float(t.heat[0, 2, 4, 5]) == pytest.approx(math.exp(-2), abs=1e-3)
    assert t.cell.tolist() == [[4 * 16 + 4]] and t.mask.tolist() == [[True]]
    assert t.size.tolist() == [[[4.0, 2.0]]] and t.offset.tolist() == [[[0.0, 0.0]]]
    centres = detector.centre_maps(np.array([[8, 12, 24, 20]]), np.array([2]), np.array([0]), 1, 5, 64)
    assert np.argwhere(centres).tolist() == [[0, 2, 4, 4]]


def test_class_weights_are_inverse_frequency_with_mean_one_over_boxes():
    weights = detector.class_weights(np.array([0, 0, 0, 1]), 3)
    # counts 3, 1, 0 -> inverse 1/3, 1, (absent: the largest, 1); scaled so 3·w0 + w1 = 4
    assert weights.tolist() == pytest.approx([2 / 3, 2.0, 2.0])


def test_focal_loss_by_hand():
    logits = torch.zeros(1, 1, 1, 2)  # p = 0.5 at a centre and at a background cell
    heat = torch.tensor([[[[1.0, 0.0]]]])
    # positive: -(1 - p)^2 log p; negative: -(1 - 0)^4 p^2 log(1 - p); both 0.25 log 2; one object
    expected = 2 * 0.25 * math.log(2) * 3.0
    assert float(detector.focal_loss(logits, heat, torch.tensor([3.0]))) == pytest.approx(expected, rel=1e-5)


def test_decode_by_hand():
    output = torch.full((1, 5 + 4, 16, 16), -10.0)
    output[0, 2, 5, 7] = 5.0  # class 2 centred at row 5, column 7
    output[0, 5:, 5, 7] = torch.tensor([4.0, 2.0, 0.5, 0.25])  # size (cells), offset (cells)
    rows = detector.decode(output, 5)[0]
    best = rows[np.argmax(rows[:, 4])]
    # centre (7.5, 5.25) cells = (30, 21) pixels, size 16 × 8 pixels
    assert best[:4].tolist() == pytest.approx([22.0, 17.0, 38.0, 25.0])
    assert best[4] == pytest.approx(1 / (1 + math.exp(-5))) and best[5] == 2


def perfect_output(t: detector.Targets, num_classes: int) -> torch.Tensor:
    n, _, h, w = t.heat.shape
    out = torch.full((n, num_classes + 4, h, w), -12.0)
    out[:, :num_classes][torch.from_numpy(t.heat == 1)] = 12.0
    for i in range(n):
        for slot in np.flatnonzero(t.mask[i]):
            y, x = divmod(int(t.cell[i, slot]), w)
            out[i, num_classes:, y, x] = torch.tensor([*t.size[i, slot], *t.offset[i, slot]])
    return out


def test_encode_then_decode_scores_perfect_map():
    source = canvas.LabeledImages(
        np.tile(np.pad(np.full((18, 18), 200, np.uint8), 5), (10, 1, 1, 1)).reshape(10, 1, 28, 28), np.arange(10)
    )
    images = canvas.make_detection_images(source, 60, seed=0, max_overlap=0.0)
    t = detector.encode_targets(images.boxes, images.labels, images.image_index, len(images), 5, 64)
    detections = detector.decode(perfect_output(t, 5), 5)
    result = evaluate_detections(detections, images.boxes, images.labels, images.image_index, 5)
    assert result["mAP"] == pytest.approx(1.0) and result["wMAP"] == pytest.approx(1.0)


def square(x: float, y: float, side: float) -> list[float]:
    return [x, y, x + side, y + side]


def test_wmap_weights_the_size_buckets_one_two_three():
    # one image per bucket: small 8×8 (64 px²), medium 16×16 (256), large 24×24 (576)
    boxes = np.array([square(4, 4, 8), square(4, 4, 16), square(4, 4, 24)])
    labels, image_index = np.zeros(3, int), np.arange(3)
    found = [np.array([[*boxes[0], 0.9, 0]]), np.zeros((0, 6)), np.array([[*boxes[2], 0.8, 0]])]
    result = evaluate_detections(found, boxes, labels, image_index, 1)
    assert result["AP_small"] == pytest.approx(1.0) and result["AP_large"] == pytest.approx(1.0)
    assert result["AP_medium"] == pytest.approx(0.0)
    assert result["wMAP"] == pytest.approx((1 + 0 + 3) / 6)
    assert weighted_map({"AP_small": 0.5, "AP_medium": float("nan"), "AP_large": 1.0}) == pytest.approx(3.5 / 4)


def test_detections_off_target_score_zero():
    boxes = np.array([square(4, 4, 16)])
    shifted = [np.array([[*square(30, 30, 16), 0.9, 0]])]
    result = evaluate_detections(shifted, boxes, np.zeros(1, int), np.zeros(1, int), 1)
    assert result["mAP"] == 0.0


def test_sampler_honours_multiplicities(tmp_path):
    """A row of multiplicity k is visited k times an epoch by the trainer."""
    rows = np.array([0, 0, 0, 1, 2, 2, 4])
    network = trainer.Network(
        ModelConfig(name="centernet_unet", width=4), TrainConfig(epochs=2, batch_size=4), 1, 5, torch.device("cpu")
    )
    seen: list[int] = []
    data = trainer.TensorData.build(
        np.zeros((5, 1, 32, 32), np.uint8), np.zeros(5, np.int64), np.zeros(1), np.ones(1), torch.device("cpu")
    )

    def loss(net, images, index, generator):
        seen.extend(index.tolist())
        return net(network.inputs(data, images)).float().mean()

    trainer.train_run(trainer.TrainSpec(tmp_path / "run", rows, seed=0), network, data, batch_loss=loss)
    assert np.bincount(seen, minlength=5).tolist() == [6, 2, 4, 0, 2]  # two epochs


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Fashion-MNIST not installed (make test installs it)")
def test_detector_learns_a_toy_set(tmp_path):
    torch.manual_seed(0)
    train, test = canvas.load_fashion_detection(800, 200, seed=0, clutter=0.0, noise=0.0)
    t = detector.encode_targets(train.boxes, train.labels, train.image_index, len(train), 5, 64)
    net = build_model("centernet_unet", 1, 5, 16)
    x = torch.from_numpy(train.x).float() / 255
    tensors = [torch.from_numpy(a) for a in (t.heat, t.cell, t.size, t.offset, t.mask)]
    weights = torch.from_numpy(detector.class_weights(train.labels, 5))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    losses = []
    for _epoch in range(6):
        total = 0.0
        for b in torch.randperm(len(train)).split(32):
            loss = detector.detection_loss(net(x[b]), *(a[b] for a in tensors), weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        losses.append(total)
    assert losses[-1] < 0.6 * losses[0]
    net.eval()
    with torch.inference_mode():
        detections = detector.decode(net(torch.from_numpy(test.x).float() / 255), 5)
    trained = evaluate_detections(detections, test.boxes, test.labels, test.image_index, 5)
    # chance: the same detections given to other images
    shuffled = [detections[(i + 1) % len(detections)] for i in range(len(detections))]
    chance = evaluate_detections(shuffled, test.boxes, test.labels, test.image_index, 5)
    assert trained["mAP"] > 0.1 and trained["mAP"] > 5 * chance["mAP"]
