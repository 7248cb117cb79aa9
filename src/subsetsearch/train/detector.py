"""Targets, loss and decoding of the single-stage centre-point detector (CenterNet-style).

The network (``centernet_unet`` in :mod:`subsetsearch.train.models`) maps an image
``[B, c, S, S]`` to ``[B, K + 4, S/4, S/4]``: K per-class centre heatmap logits (sigmoid: "an
object of class k is centred in this cell"), then the box width and height in cells, then the
centre's offset within its cell. Boxes decode from the heatmap's local maxima. The heatmap loss
is the focal loss of CenterNet (Zhou et al., 2019) with the ground truth splatted as Gaussians,
each class weighted by the inverse of its box frequency in the model's training set (normalised
to mean 1 over boxes), as the paper does for its long-tailed data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from subsetsearch.train.models import BOX_CHANNELS, STRIDE

SIZE_LOSS_WEIGHT = 0.1
OFFSET_LOSS_WEIGHT = 1.0


@dataclass(frozen=True)
class Targets:
    """Training targets of N images at output resolution (CenterNet's encoding).

    heat : float16 [N, K, h, w]  Gaussian-splatted centres (1 at each centre cell)
    cell : int64 [N, B]          flat cell (y·w + x) of each image's objects (up to B)
    size : float32 [N, B, 2]     width, height in cells
    offset : float32 [N, B, 2]   centre minus its cell's corner, in cells, in [0, 1)
    mask : bool [N, B]           which of the B slots hold an object
    """

    heat: np.ndarray
    cell: np.ndarray
    size: np.ndarray
    offset: np.ndarray
    mask: np.ndarray


def gaussian_sigma(width: float, height: float) -> float:
    """Spread (cells) of an object's ground-truth peak: a sixth of its smaller side, at least 0.5."""
    return max(0.5, min(width, height) / 6.0)


def encode_targets(
    boxes: np.ndarray, labels: np.ndarray, image_index: np.ndarray, num_images: int, num_classes: int, image_size: int
) -> Targets:
    """CenterNet targets from pixel boxes ``[x0, y0, x1, y1]`` (ends exclusive)."""
    cells = image_size // STRIDE
    per_image = np.bincount(image_index, minlength=num_images) if len(image_index) else np.zeros(num_images, int)
    slots = max(1, int(per_image.max()) if num_images else 1)
    heat = np.zeros((num_images, num_classes, cells, cells), dtype=np.float32)
    cell = np.zeros((num_images, slots), dtype=np.int64)
    size = np.zeros((num_images, slots, 2), dtype=np.float32)
    offset = np.zeros((num_images, slots, 2), dtype=np.float32)
    mask = np.zeros((num_images, slots), dtype=bool)
    starts = np.concatenate([[0], np.cumsum(per_image)])
    grid = np.arange(cells, dtype=np.float32) + 0.5
    for b in range(len(boxes)):
        i = image_index[b]
        slot = b - starts[i]
        x0, y0, x1, y1 = boxes[b] / STRIDE
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        gx, gy = min(int(cx), cells - 1), min(int(cy), cells - 1)
        sigma = gaussian_sigma(x1 - x0, y1 - y0)
        bump = np.exp(-((grid[None, :] - (gx + 0.5)) ** 2 + (grid[:, None] - (gy + 0.5)) ** 2) / (2 * sigma**2))
        np.maximum(heat[i, labels[b]], bump, out=heat[i, labels[b]])
        heat[i, labels[b], gy, gx] = 1.0
        cell[i, slot] = gy * cells + gx
        size[i, slot] = (x1 - x0, y1 - y0)
        offset[i, slot] = (cx - gx, cy - gy)
        mask[i, slot] = True
    return Targets(heat.astype(np.float16), cell, size, offset, mask)


def centre_maps(
    boxes: np.ndarray, labels: np.ndarray, image_index: np.ndarray, num_images: int, num_classes: int, image_size: int
) -> np.ndarray:
    """Binary ground-truth centre maps ``[n, K, S/4, S/4]`` (bool): the cell of each object's centre."""
    cells = image_size // STRIDE
    out = np.zeros((num_images, num_classes, cells, cells), dtype=bool)
    if len(boxes):
        cx = np.minimum(((boxes[:, 0] + boxes[:, 2]) / (2 * STRIDE)).astype(np.int64), cells - 1)
        cy = np.minimum(((boxes[:, 1] + boxes[:, 3]) / (2 * STRIDE)).astype(np.int64), cells - 1)
        out[image_index, labels, cy, cx] = True
    return out


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse box frequency per class, scaled so the mean weight over boxes is 1 (classes with no
    box get the largest weight)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    inverse = 1.0 / np.maximum(counts, 1.0)
    inverse[counts == 0] = inverse[counts > 0].max() if (counts > 0).any() else 1.0
    total = counts.sum()
    scale = total / float((counts * inverse).sum()) if total else 1.0
    return (inverse * scale).astype(np.float32)


def focal_loss(logits: torch.Tensor, heat: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), per class weighted, summed over
    locations and divided by the number of objects (at least 1)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = heat >= 1.0
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    pos = -((1 - p) ** 2) * log_p * positive
    neg = -((1 - heat) ** 4) * p**2 * log_not_p * ~positive
    per_class = (pos + neg).sum(dim=(0, 2, 3))
    return (per_class * weights).sum() / positive.sum().clamp(min=1)


def detection_loss(
    output: torch.Tensor,
    heat: torch.Tensor,
    cell: torch.Tensor,
    size: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Focal heatmap loss + 0.1 · L1 size loss + L1 offset loss at the object centres."""
    k = heat.shape[1]
    output = output.float()
    loss = focal_loss(output[:, :k], heat.float(), weights)
    box = output[:, k:].flatten(2)  # [B, 4, h·w]
    picked = box.gather(2, cell[:, None, :].expand(-1, BOX_CHANNELS, -1)).transpose(1, 2)  # [B, slots, 4]
    m = mask[..., None].float()
    count = m.sum().clamp(min=1)
    size_loss = (torch.abs(picked[..., :2] - size) * m).sum() / count
    offset_loss = (torch.abs(picked[..., 2:] - offset) * m).sum() / count
    return loss + SIZE_LOSS_WEIGHT * size_loss + OFFSET_LOSS_WEIGHT * offset_loss


@torch.inference_mode()
def decode(output: torch.Tensor, num_classes: int, top: int = 100) -> list[np.ndarray]:
    """Detections of each image: ``[d, 6]`` float64 rows (x0, y0, x1, y1, score, class) in pixels.

    Peaks are cells that are the maximum of their 3×3 neighbourhood (CenterNet's max-pool NMS);
    the ``top`` highest of each image are kept.
    """
    output = output.float()
    heat = torch.sigmoid(output[:, :num_classes])
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    _, k, h, w = heat.shape
    scores, flat = peaks.flatten(1).topk(min(top, k * h * w), dim=1)
    cls = flat // (h * w)
    cell = flat % (h * w)
    box = output[:, num_classes:].flatten(2)
    picked = box.gather(2, cell[:, None, :].expand(-1, BOX_CHANNELS, -1))  # [B, 4, top]
    cx = (cell % w).float() + picked[:, 2]
    cy = (cell // w).float() + picked[:, 3]
    bw, bh = picked[:, 0].clamp(min=0), picked[:, 1].clamp(min=0)
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1) * STRIDE
    rows = torch.cat([boxes, scores[..., None], cls[..., None].float()], dim=-1).double().cpu().numpy()
    return [r[r[:, 4] > 0] for r in rows]
