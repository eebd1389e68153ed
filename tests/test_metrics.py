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


# --------------------------------------------------------------------------- thin structures, topology, boundaries

from skimage.measure import label  # noqa: E402

from harness.metrics import METRICS, image_metrics, metric, per_image_from_counts, thin_class  # noqa: E402


def membrane_grid(n: int = 4, cell: int = 9) -> np.ndarray:
    """ISBI-style labels: class 0 = one-pixel membranes on a grid, class 1 = n x n cells."""
    size = n * (cell + 1) + 1
    ref = np.ones((size, size), np.uint8)
    ref[::cell + 1, :] = 0
    ref[:, ::cell + 1] = 0
    return ref


def counts_of(pred, ref, classes=(1,)):
    return confusion_counts(t(pred.astype(np.int64)), t(ref.astype(np.int64)), list(classes))[None]


def test_a_gap_in_one_membrane_merges_two_cells_dice_barely_notices_topology_does():
    ref = membrane_grid()
    pred = ref.copy()
    pred[5, 10] = 1  # one pixel of the membrane between the first two cells is missing
    assert label(ref == 1, connectivity=1).max() == 16 and label(pred == 1, connectivity=1).max() == 15
    c = counts_of(pred, ref)
    assert per_image_dice(c)[0] > 0.998 and per_image_from_counts(c, "dice_c0")[0] > 0.99
    same, gap = image_metrics(ref, ref, [1], thin=0), image_metrics(pred, ref, [1], thin=0)
    assert same["rand_f"] == 1 and same["vi"] == 0 and same["cldice"] == 1
    assert gap["rand_f"] < 0.95 and gap["vi"] > 0.1  # clearly worse: two cells are one
    assert 0.99 < gap["cldice"] < 1
    assert thin_class(c) == 0  # the membranes have fewer pixels: they are the thin class


def test_a_one_pixel_shift_has_hd95_1_and_surface_dice_1_at_tolerance_1():
    ref = np.zeros((32, 32), np.uint8)
    ref[8:20, 10:22] = 1
    pred = np.roll(ref, 1, axis=1)
    m = image_metrics(pred, ref, [1], thin=None)
    assert m["hd95"] == pytest.approx(1) and m["nsd"] == pytest.approx(1)
    assert image_metrics(np.roll(ref, 3, axis=1), ref, [1], thin=None)["nsd"] < 0.8  # beyond 1 px
    assert "rand_f" not in m  # topology needs the thin class of binary data


def test_an_empty_reference_scores_by_the_stated_rules():
    empty, blob = np.zeros((30, 40), np.uint8), np.zeros((30, 40), np.uint8)
    blob[5:10, 5:10] = 1
    both = image_metrics(empty, empty, [1], thin=None)
    assert both["hd95"] == 0 and both["nsd"] == 1 and per_image_dice(counts_of(empty, empty))[0] == 1
    false_alarm = image_metrics(blob, empty, [1], thin=None)
    assert false_alarm["hd95"] == pytest.approx(50) and false_alarm["nsd"] == 0  # the diagonal
    assert per_image_dice(counts_of(blob, empty))[0] == 0
    # topology: an image whose reference has no cell pixel is left out (NaN)
    all_membrane = image_metrics(blob, empty, [1], thin=0)
    assert math.isnan(all_membrane["rand_f"]) and math.isnan(all_membrane["vi"])
    assert image_metrics(empty, empty, [1], thin=1)["cldice"] == 1  # both skeletons empty
    assert image_metrics(blob, empty, [1], thin=1)["cldice"] == 0   # one empty


def test_an_absent_class_under_both_conventions():
    ref = np.array([[0, 1, 1], [0, 1, 1], [0, 0, 0]])
    pred = np.array([[0, 1, 1], [0, 1, 0], [0, 0, 0]])  # class 2 absent from both
    c = counts_of(pred, ref, classes=(1, 2))
    d1 = 2 * 3 / (2 * 3 + 0 + 1)
    assert per_image_from_counts(c, "dice")[0] == pytest.approx((d1 + 1) / 2)  # absent = 1
    assert per_image_from_counts(c, "dice_nn")[0] == pytest.approx(d1)          # absent left out
    assert per_image_from_counts(c, "dice_c2")[0] == 1
    none = counts_of(np.zeros((3, 3)), np.zeros((3, 3)), classes=(1, 2))
    assert math.isnan(per_image_from_counts(none, "dice_nn")[0])  # every class absent: left out
    s = summarize(np.concatenate([c, none]))
    assert s["dice_nn"] == pytest.approx(d1) and s["dice"] == pytest.approx(((d1 + 1) / 2 + 1) / 2)


def test_both_sides_of_a_binary_task_from_one_class_counts():
    rng = np.random.default_rng(0)
    ref, pred = (rng.random((2, 20, 20)) < 0.3).astype(np.uint8)
    c = counts_of(pred, ref)
    direct = counts_of(1 - pred, 1 - ref)  # class 0 counted as a foreground of its own
    assert per_image_from_counts(c, "dice_c0")[0] == pytest.approx(per_image_dice(direct)[0])
    assert per_image_from_counts(c, "iou_c1")[0] == pytest.approx(per_image_from_counts(c, "iou")[0])
    assert per_image_from_counts(c, "dice_thin")[0] == per_image_from_counts(c, f"dice_c{thin_class(c)}")[0]


def test_every_metric_says_what_it_measures_and_which_way_is_better():
    for m in METRICS.values():
        assert m.text.endswith(".") and m.label
    assert not metric("vi").higher_is_better and not metric("hd95").higher_is_better
    assert metric("rand_f").higher_is_better and metric("hd95_c2").label == "HD95 class 2"
    with pytest.raises(ValueError, match="metric 'dcie': expected one of dice"):
        metric("dcie")


def test_whole_map_metrics_in_worker_processes_are_the_same_values():
    """A CUDA run computes them in a process pool (``evaluate.metric_workers``): same values,
    same order, as in this process."""
    import dataclasses

    from harness.training.evaluate import image_scores, metric_workers, score
    from harness.training.execution import Execution

    rng = np.random.default_rng(0)
    masks = [(rng.random((24, 24)) < 0.3).astype(np.int64) for _ in range(5)]
    preds = [np.where(rng.random(m.shape) < 0.1, 1 - m, m).astype(np.uint8) for m in masks]
    counts = score(preds, masks, 2)
    here, pooled = image_scores(preds, masks, 2, counts), image_scores(preds, masks, 2, counts, workers=2)
    np.testing.assert_equal(here["values"], pooled["values"])  # NaN equal to NaN
    assert here["thin_class"] == pooled["thin_class"]
    assert metric_workers(Execution()) == 0  # a CPU run's cores are busy training
    cuda = dataclasses.replace(Execution(), device=torch.device("cuda"), threads=1)
    assert 0 <= metric_workers(cuda) <= 8
