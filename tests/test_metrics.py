"""Metrics on hand-made masks, empty references included."""
import math

import numpy as np
import pytest
import torch

from harness.metrics import confusion_counts, per_image_dice, summarize


def t(rows):
    return torch.tensor(rows, dtype=torch.int64)


def test_counts_on_a_hand_made_mask():
    ref = t([[1, 1, 0], [0, 1, 0], [255, 0, 0]])
    pred = t([[1, 0, 0], [1, 1, 0], [1, 1, 0]])  # the ignored pixel is left out
    c = confusion_counts(pred, ref, [1])
    assert c.tolist() == [[2, 2, 1, 3]]  # TP 2, FP 2 ((1,0) and (2,1)), FN 1, TN 3
    m = summarize(c[None])
    assert m["dice"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    assert m["iou"] == pytest.approx(2 / 5)


def test_empty_reference_and_empty_prediction_scores_one():
    ref = t([[0, 0], [0, 0]])
    good = confusion_counts(t([[0, 0], [0, 0]]), ref, [1])
    bad = confusion_counts(t([[0, 1], [0, 0]]), ref, [1])
    full_ref = t([[1, 1], [1, 1]])
    perfect = confusion_counts(full_ref, full_ref, [1])
    m = summarize(np.stack([good, bad, perfect]))
    assert per_image_dice(np.stack([good, bad, perfect])).tolist() == [1.0, 0.0, 1.0]
    assert m["dice"] == pytest.approx(2 / 3)
    assert m["n_empty"] == 2 and m["fpr_empty"] == pytest.approx(0.5)
    # pooled: TP 4, FP 1, FN 0
    assert m["dice_global"] == pytest.approx(8 / 9)
    assert m["iou_global"] == pytest.approx(4 / 5)


def test_multiclass_mean_over_foreground_classes():
    ref = t([[1, 1, 2, 0]])
    pred = t([[1, 2, 2, 3]])
    c = confusion_counts(pred, ref, [1, 2, 3])
    # class 1: TP1 FN1 -> 2/3; class 2: TP1 FP1 -> 2/3; class 3: FP1, empty ref -> 0
    assert c[:, :3].tolist() == [[1, 0, 1], [1, 1, 0], [0, 1, 0]]
    m = summarize(c[None])
    assert m["dice"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert m["n_empty"] == 0 and math.isnan(m["fpr_empty"])


def test_bad_counts_shape_is_an_error():
    with pytest.raises(ValueError):
        summarize(np.zeros((0, 1, 4)))
