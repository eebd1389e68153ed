"""Dice and IoU from per-image, per-class confusion counts (the only thing stored).

Rules (stated in every report):

* Counts are taken per test image and per foreground class (binary data: class 1;
  multi-class: classes 1..K-1); pixels labelled 255 (ignore) are left out.
* Per-image Dice of a class is 2TP / (2TP + FP + FN); IoU is TP / (TP + FP + FN). When
  reference and prediction are both empty the score is 1 (a correct empty prediction).
* ``dice`` (the headline) and ``iou``: per-image scores averaged over foreground classes,
  then over images. ``dice_global`` / ``iou_global``: counts pooled over all images per
  class, then averaged over classes.
* ``fpr_empty``: among images whose reference has no foreground at all, the fraction
  with any predicted foreground pixel (NaN when no image has an empty reference).
"""
from __future__ import annotations

import numpy as np
import torch

FIELDS = ("tp", "fp", "fn", "tn")
IGNORE = 255


def confusion_counts(pred: torch.Tensor, target: torch.Tensor, classes: list[int]) -> np.ndarray:
    """Counts for one image: array of shape (len(classes), 4) with TP, FP, FN, TN.

    ``pred`` and ``target`` are integer class maps of equal shape (H, W)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and reference {tuple(target.shape)} differ")
    valid = target != IGNORE
    out = np.zeros((len(classes), 4), dtype=np.int64)
    n = int(valid.sum())
    for i, c in enumerate(classes):
        p = (pred == c) & valid
        t = target == c
        tp = int((p & t).sum())
        fp = int(p.sum()) - tp
        fn = int(t.sum()) - tp
        out[i] = (tp, fp, fn, n - tp - fp - fn)
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 / 0 = 1 (empty reference and empty prediction)."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    out = np.ones_like(den)
    np.divide(num, den, out=out, where=den > 0)
    return out


def per_image_dice(counts: np.ndarray) -> np.ndarray:
    """counts (images, classes, 4) -> Dice per image, averaged over classes."""
    counts = np.asarray(counts)
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    return _ratio(2 * tp, 2 * tp + fp + fn).mean(axis=-1)


def per_image_iou(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts)
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    return _ratio(tp, tp + fp + fn).mean(axis=-1)


def summarize(counts: np.ndarray) -> dict:
    """All derived metrics of one run from its counts (images, classes, 4)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 3 or counts.shape[-1] != 4 or counts.shape[0] == 0:
        raise ValueError(f"expected counts of shape (images, classes, 4), got {counts.shape}")
    pooled = counts.sum(axis=0)
    tp, fp, fn = pooled[:, 0], pooled[:, 1], pooled[:, 2]
    ref_fg = counts[..., 0] + counts[..., 2]   # TP + FN: reference foreground per class
    pred_fg = counts[..., 0] + counts[..., 1]  # TP + FP: predicted foreground per class
    empty = ref_fg.sum(axis=1) == 0
    dice = per_image_dice(counts)
    return {
        "dice": float(dice.mean()),
        "iou": float(per_image_iou(counts).mean()),
        "dice_global": float(_ratio(2 * tp, 2 * tp + fp + fn).mean()),
        "iou_global": float(_ratio(tp, tp + fp + fn).mean()),
        "fpr_empty": float((pred_fg[empty].sum(axis=1) > 0).mean()) if empty.any() else float("nan"),
        "n_empty": int(empty.sum()),
        "n_images": int(counts.shape[0]),
    }
