"""Every metric of the harness: its definition, how empty masks score, and which way is better.

Two kinds, stated in every report (``METRICS``, one sentence each):

* From the per-image, per-class confusion counts (stored for every run, so records of
  every schema have them): Dice and IoU of each foreground class, averaged over classes
  (``dice``, the headline, and ``iou``; a class absent from reference and prediction scores
  1), the nnU-Net convention (``dice_nn``, ``iou_nn``: such a class is NaN and left out, a
  nanmean), the Dice of each class ``dice_c<k>`` / ``iou_c<k>`` (binary data: both sides,
  class 0 from the complement of class 1), and ``dice_thin``: the Dice of the thin-structure
  class of binary data, the class with fewer reference pixels over the test images (the
  membranes of ISBI-style data, class 0). Counts are taken per test image and foreground
  class (binary: class 1; multi-class: 1..K-1); pixels labelled 255 (ignore) are left out.
  ``dice_global`` / ``iou_global`` pool the counts over images first.
* From the whole predicted and reference maps (``image_metrics``, computed once in the run,
  on CPU, stored per image): the ISBI 2012 scores on the cells, the connected components
  (4-connectivity) of the non-thin class, with the thin pixels of the reference ignored as
  the challenge does (``rand_f``: 1 - adapted Rand error, ``vi``: variation of information,
  from ``skimage.metrics``); ``cldice``, the centerline Dice of the thin class (skeletons from
  ``skimage.morphology.skeletonize``); ``hd95`` and ``nsd`` (normalized surface Dice at
  ``NSD_TOLERANCE`` pixels) per foreground class from MONAI, averaged over classes.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

FIELDS = ("tp", "fp", "fn", "tn")
IGNORE = 255
NSD_TOLERANCE = 1.0  # pixels


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
    out = {
        "dice": float(dice.mean()),
        "iou": float(per_image_iou(counts).mean()),
        "dice_global": float(_ratio(2 * tp, 2 * tp + fp + fn).mean()),
        "iou_global": float(_ratio(tp, tp + fp + fn).mean()),
        "fpr_empty": float((pred_fg[empty].sum(axis=1) > 0).mean()) if empty.any() else float("nan"),
        "n_empty": int(empty.sum()),
        "n_images": int(counts.shape[0]),
    }
    for name in count_metric_names(counts.shape[1]):
        if name not in out:
            out[name] = nanmean(per_image_from_counts(counts, name))
    return out


def count_metric_names(n_columns: int) -> list[str]:
    """The counts metrics of data whose counts have ``n_columns`` foreground classes."""
    binary = n_columns == 1
    classes = [0, 1] if binary else range(1, n_columns + 1)
    return ["dice", "iou", "dice_nn", "iou_nn", *(["dice_thin"] if binary else []),
            *(f"{m}_c{k}" for m in ("dice", "iou") for k in classes)]


def nanmean(values) -> float:
    """The mean of the values that are not NaN (NaN when none is)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


# --------------------------------------------------------------------------- the registry

@dataclass(frozen=True)
class Metric:
    name: str            # the key in records, runs.csv and ``--metric``
    label: str           # in tables and figures
    higher_is_better: bool
    text: str            # one sentence: what it measures and how empty masks score
    from_counts: bool    # derived from the counts (every record has it) or stored per image
    binary_only: bool = False
    margin: float = 0.005  # the default equivalence margin, in the metric's units (the only place it is written)


METRICS = {m.name: m for m in [
    Metric("dice", "Dice", True, "overlap 2|P∩R|/(|P|+|R|) per test image, averaged over the "
           "foreground classes; a class absent from both reference and prediction scores 1.", True),
    Metric("iou", "IoU", True, "overlap |P∩R|/|P∪R| per image, averaged over the foreground "
           "classes; a class absent from both scores 1.", True),
    Metric("dice_nn", "Dice (nnU-Net)", True, "Dice as nnU-Net aggregates it: a class absent "
           "from both reference and prediction is left out (NaN, nanmean), and an image where "
           "every class is absent is left out.", True),
    Metric("iou_nn", "IoU (nnU-Net)", True, "IoU with the nnU-Net convention (absent classes "
           "left out).", True),
    Metric("dice_thin", "Dice (thin)", True, "Dice of the thin-structure class of binary data "
           "(the class with fewer reference pixels over the test images: the membranes of "
           "ISBI-style data); absent from both scores 1.", True, binary_only=True),
    Metric("cldice", "clDice (thin)", True, "centerline Dice of the thin-structure class: "
           "how much of each skeleton lies inside the other mask, so a broken or spurious "
           "thin line costs in proportion to its length, not its pixels; both skeletons empty "
           "scores 1, one empty scores 0.", False, binary_only=True),
    Metric("rand_f", "Rand F", True, "ISBI 2012 Rand F-score (1 - adapted Rand error) of the "
           "cells, the connected components of the non-thin class: a merge or split of cells "
           "costs, a shifted boundary barely does; an image whose reference has no cell pixel "
           "is left out (NaN).", False, binary_only=True),
    Metric("vi", "VI", False, "ISBI 2012 variation of information of the cells (split + "
           "merge conditional entropies, in nats; 0 is a perfect segmentation); an image "
           "whose reference has no cell pixel is left out (NaN).", False, binary_only=True, margin=0.02),
    Metric("hd95", "HD95 (px)", False, "95th-percentile symmetric Hausdorff distance between "
           "the boundaries of prediction and reference, per foreground class, averaged over "
           "classes (MONAI); both empty scores 0, one empty scores the image diagonal.", False, margin=0.5),
    Metric("nsd", "NSD", True, f"normalized surface Dice at a tolerance of {NSD_TOLERANCE:g} "
           "pixel: the fraction of both boundaries within the tolerance of the other, per "
           "foreground class, averaged (MONAI); both empty scores 1, one empty scores 0.", False),
]}


PER_CLASS = ("dice", "iou", "hd95", "nsd")  # the metrics with a per-class form <metric>_c<k>


def class_of(name: str) -> tuple[str, int] | None:
    """(metric, class) of a per-class name (``hd95_c2`` -> ("hd95", 2); the class in ASCII
    digits), None for any other name."""
    base, _, k = name.rpartition("_c")
    return (base, int(k)) if base in PER_CLASS and k.isascii() and k.isdigit() else None


def metric(name: str) -> Metric:
    """The registered metric, or a per-class one (``dice_c<k>``, ``iou_c<k>``,
    ``hd95_c<k>``, ``nsd_c<k>``); a ValueError naming the choices otherwise."""
    if name in METRICS:
        return METRICS[name]
    if (per_class := class_of(name)) is not None:
        base, k = per_class
        m = METRICS[base]
        return Metric(name, f"{m.label.split(' ')[0]} class {k}", m.higher_is_better,
                      f"{m.label.split(' ')[0]} of class {k} alone.", m.from_counts, margin=m.margin)
    raise ValueError(f"metric {name!r}: expected one of {', '.join(METRICS)} or a class's "
                     f"dice_c<k>, iou_c<k>, hd95_c<k>, nsd_c<k>")


# --------------------------------------------------------------------------- from counts

def _sides(counts: np.ndarray, binary: bool) -> tuple[np.ndarray, list[int]]:
    """(tp, fp, fn) per image and class, and the class of each column; binary data gain
    class 0 as the complement of class 1 (its TP is class 1's TN, and so on)."""
    counts = np.asarray(counts, dtype=np.int64)
    if binary and counts.shape[1] == 1:
        c1 = counts[:, 0]
        c0 = np.stack([c1[:, 3], c1[:, 2], c1[:, 1], c1[:, 0]], axis=-1)
        return np.stack([c0, c1], axis=1), [0, 1]
    return counts, list(range(1, counts.shape[1] + 1))


def thin_class(counts: np.ndarray) -> int:
    """Binary data: the class with fewer reference pixels over all images (ties: 0)."""
    c = np.asarray(counts, dtype=np.int64)[:, 0]
    return 0 if (c[:, 3] + c[:, 1]).sum() <= (c[:, 0] + c[:, 2]).sum() else 1


def per_image_from_counts(counts: np.ndarray, name: str) -> np.ndarray:
    """Per-image values of a counts metric (``Metric.from_counts``)."""
    counts = np.asarray(counts, dtype=np.int64)
    binary = counts.shape[1] == 1
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    if name == "dice":
        return per_image_dice(counts)
    if name == "iou":
        return per_image_iou(counts)
    if name in ("dice_nn", "iou_nn"):
        num, den = (2 * tp, 2 * tp + fp + fn) if name == "dice_nn" else (tp, tp + fp + fn)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.where(den > 0, num / np.maximum(den, 1), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an image with every class absent
            return np.nanmean(per_class, axis=1)
    if name == "dice_thin":
        if not binary:
            raise ValueError("dice_thin: binary data only")
        return per_image_from_counts(counts, f"dice_c{thin_class(counts)}")
    per_class = class_of(name)
    sides, classes = _sides(counts, binary)
    if per_class is not None and per_class[0] in ("dice", "iou") and per_class[1] in classes:
        c = sides[:, classes.index(per_class[1])][:, None]
        return per_image_dice(c) if per_class[0] == "dice" else per_image_iou(c)
    raise ValueError(f"metric {name!r}: not derived from counts of {counts.shape[1]} class(es)")


# --------------------------------------------------------------------------- from whole maps

def _cldice(pred: np.ndarray, ref: np.ndarray) -> float:
    from skimage.morphology import skeletonize

    sp, sr = skeletonize(pred), skeletonize(ref)
    if not sp.any() and not sr.any():
        return 1.0
    tprec = (sp & ref).sum() / sp.sum() if sp.any() else 0.0
    tsens = (sr & pred).sum() / sr.sum() if sr.any() else 0.0
    return float(2 * tprec * tsens / (tprec + tsens)) if tprec + tsens > 0 else 0.0


def _cells_scores(pred_cells: np.ndarray, ref_cells: np.ndarray) -> tuple[float, float]:
    """(Rand F, VI) of two cell masks as the ISBI 2012 challenge scores them: cells are the
    4-connected components; reference background (membrane, ignore) is left out."""
    from skimage.measure import label
    from skimage.metrics import adapted_rand_error, variation_of_information

    if not ref_cells.any():
        return float("nan"), float("nan")
    ref, pred = label(ref_cells, connectivity=1), label(pred_cells, connectivity=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = adapted_rand_error(ref, pred, ignore_labels=(0,))[0]
        vi = variation_of_information(ref, pred, ignore_labels=(0,))
    return float(1 - error), float(np.sum(vi))


def _surface(pred: np.ndarray, ref: np.ndarray, tolerance: float) -> tuple[float, float]:
    """(HD95, NSD) of one class from MONAI, with the empty rules of ``METRICS``."""
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    if not pred.any() and not ref.any():
        return 0.0, 1.0
    if not pred.any() or not ref.any():
        return float(np.hypot(*pred.shape)), 0.0
    p = torch.from_numpy(np.ascontiguousarray(pred))[None, None]
    r = torch.from_numpy(np.ascontiguousarray(ref))[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's deprecation notices
        hd = compute_hausdorff_distance(p, r, percentile=95).item()
        nsd = compute_surface_dice(p, r, class_thresholds=[tolerance]).item()
    return float(hd), float(nsd)


def image_metrics(pred: np.ndarray, ref: np.ndarray, classes: list[int], thin: int | None,
                  tolerance: float = NSD_TOLERANCE) -> dict[str, float]:
    """The whole-map metrics of one image: ``hd95`` and ``nsd`` (mean over ``classes``) and
    per class ``hd95_c<k>``, ``nsd_c<k>``; with ``thin`` (binary data): ``cldice``,
    ``rand_f`` and ``vi``. Reference pixels labelled ``IGNORE`` are left out."""
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ")
    valid = ref != IGNORE
    out: dict[str, float] = {}
    for k in classes:
        out[f"hd95_c{k}"], out[f"nsd_c{k}"] = _surface((pred == k) & valid, ref == k, tolerance)
    out["hd95"] = float(np.mean([out[f"hd95_c{k}"] for k in classes]))
    out["nsd"] = float(np.mean([out[f"nsd_c{k}"] for k in classes]))
    if thin is not None:
        out["cldice"] = _cldice((pred == thin) & valid, ref == thin)
        out["rand_f"], out["vi"] = _cells_scores((pred != thin) & valid, (ref != thin) & valid)
    return out
