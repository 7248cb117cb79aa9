"""COCO-style mAP (pycocotools, the reference implementation) and the paper's size-weighted wMAP.

wMAP averages the COCO AP (IoU 0.50:0.95, 101 recall points, up to 100 detections) of three
object-size buckets, weighting larger objects more, as a driving application does (near, large
objects matter most). Buckets by box area in pixels on our 64-pixel canvases:

========  ==================  ======
bucket    box area            weight
========  ==================  ======
small     below 12² (144)     1
medium    12² to 20² (400)    2
large     20² and above       3
========  ==================  ======

so ``wMAP = (AP_small + 2·AP_medium + 3·AP_large) / 6`` (a bucket without ground truth drops
out and the weights of the others are renormalised). On a COCO-format set of the user's
(``data.dataset: coco``) boxes are judged in the original image's pixels with COCO's own
buckets (below 32², 32² to 96², above: ``COCO_BUCKETS``) and the same weights. wMAP is this
project's definition: the paper weights larger objects more but does not state its weights.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

SIZE_BUCKETS = {"small": (0.0, 12.0**2), "medium": (12.0**2, 20.0**2), "large": (20.0**2, 1e10)}
COCO_BUCKETS = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}
SIZE_WEIGHTS = {"small": 1.0, "medium": 2.0, "large": 3.0}


def evaluate_detections(
    detections: list[np.ndarray],
    boxes: np.ndarray,
    labels: np.ndarray,
    image_index: np.ndarray,
    num_classes: int,
    *,
    buckets: dict[str, tuple[float, float]] | None = None,
) -> dict[str, float]:
    """COCO mAP, AP50, AP75, per-size-bucket AP and wMAP of ``detections`` against ground truth.

    Parameters
    ----------
    detections : list of n arrays of shape (d, 6), float
        Per image: x0, y0, x1, y1 (pixels), score, class.
    boxes : ndarray of shape (B, 4)
        Ground-truth ``[x0, y0, x1, y1]``; ``labels`` (B,) their classes, ``image_index`` (B,) their images.
    buckets : dict, optional
        Box-area range (pixels²) of the small, medium and large buckets; default ``SIZE_BUCKETS``.

    Returns
    -------
    dict with ``mAP``, ``AP50``, ``AP75``, ``AP_small``, ``AP_medium``, ``AP_large``, ``wMAP``
    (fractions in [0, 1]; NaN for a bucket with no ground truth) and ``AP_<class index>``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    buckets = SIZE_BUCKETS if buckets is None else buckets
    n = len(detections)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    truth = {
        "images": [{"id": i} for i in range(n)],
        "categories": [{"id": k} for k in range(num_classes)],
        "annotations": [
            {
                "id": j + 1,
                "image_id": int(image_index[j]),
                "category_id": int(labels[j]),
                "bbox": [float(boxes[j, 0]), float(boxes[j, 1]), float(widths[j]), float(heights[j])],
                "area": float(widths[j] * heights[j]),
                "iscrowd": 0,
            }
            for j in range(len(boxes))
        ],
    }
    rows = [np.column_stack([np.full(len(d), i), d]) for i, d in enumerate(detections) if len(d)]
    results = np.concatenate(rows) if rows else np.zeros((0, 7))
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        gt = COCO()
        gt.dataset = truth
        gt.createIndex()
        if len(results) == 0:
            return _empty_result(num_classes)
        # loadRes takes [image, x, y, w, h, score, class] rows
        as_xywh = np.column_stack(
            [results[:, 0], results[:, 1], results[:, 2], results[:, 3] - results[:, 1], results[:, 4] - results[:, 2]]
        )
        dt = gt.loadRes(np.column_stack([as_xywh, results[:, 5], results[:, 6]]))
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.areaRng = [[0.0, 1e10], *[list(buckets[name]) for name in SIZE_WEIGHTS]]
        evaluator.params.areaRngLbl = ["all", *SIZE_WEIGHTS]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"]  # [IoU T, recall R, class K, area A, maxDets M]
    out = {
        "mAP": _mean_ap(precision[:, :, :, 0, -1]),
        "AP50": _mean_ap(precision[0, :, :, 0, -1]),
        "AP75": _mean_ap(precision[5, :, :, 0, -1]),
    }
    for a, name in enumerate(SIZE_WEIGHTS, start=1):
        out[f"AP_{name}"] = _mean_ap(precision[:, :, :, a, -1])
    out["wMAP"] = weighted_map(out)
    for k in range(num_classes):
        out[f"AP_{k}"] = _mean_ap(precision[:, :, k, 0, -1])
    return out


def weighted_map(aps: dict[str, float]) -> float:
    """``sum_b w_b AP_b / sum_b w_b`` over the size buckets that have ground truth."""
    total = weight = 0.0
    for name, w in SIZE_WEIGHTS.items():
        value = aps[f"AP_{name}"]
        if np.isfinite(value):
            total += w * value
            weight += w
    return total / weight if weight else float("nan")


def _mean_ap(precision: np.ndarray) -> float:
    valid = precision[precision > -1]  # -1: no ground truth for that class/bucket
    return float(valid.mean()) if valid.size else float("nan")


def _empty_result(num_classes: int) -> dict[str, float]:
    out = dict.fromkeys(("mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "wMAP"), 0.0)
    out.update({f"AP_{k}": 0.0 for k in range(num_classes)})
    return out
