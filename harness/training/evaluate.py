"""Scoring predicted class maps: per-image, per-class confusion counts, the whole-map metrics
of every image, and the validation scores that select a checkpoint."""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from ..metrics import (
    NSD_TOLERANCE,
    confusion_counts,
    image_metrics,
    metric,
    nanmean,
    per_image_from_counts,
    summarize,
    thin_class,
)
from .predict import predict_classes


def foreground_classes(num_classes: int) -> list[int]:
    return list(range(1, max(num_classes, 2)))


def score(preds: list[np.ndarray], masks: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Counts (images, foreground classes, 4) for predicted and reference class maps."""
    classes = foreground_classes(num_classes)
    return np.stack([confusion_counts(torch.from_numpy(p.astype(np.int64)), torch.from_numpy(m), classes)
                     for p, m in zip(preds, masks)])


MAX_METRIC_WORKERS = 8
_POOL: dict = {}  # workers -> the process pool of this process (made once, kept for its runs)


def metric_workers(ex) -> int:
    """Processes that compute a CUDA run's whole-map metrics (about 60 ms per 256 x 256 image
    on one core, the GPU idle meanwhile): the cores the run's threads leave, up to
    ``MAX_METRIC_WORKERS``; 0 (in this process) for a CPU run, whose cores are busy anyway."""
    if not ex.cuda:
        return 0
    spare = (os.cpu_count() or 1) - ex.threads
    return min(MAX_METRIC_WORKERS, spare) if spare > 1 else 0


def _per_image(preds, masks, classes, thin, workers: int) -> list[dict]:
    if workers < 2 or len(preds) < 2:
        return [image_metrics(p, m, classes, thin) for p, m in zip(preds, masks)]
    if workers not in _POOL:  # "spawn": nothing of this process (CUDA, threads) is inherited
        _POOL[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    n = len(preds)
    return list(_POOL[workers].map(image_metrics, preds, masks, [classes] * n, [thin] * n,
                                   chunksize=max(1, n // (4 * workers))))


def image_scores(preds: list[np.ndarray], masks: list[np.ndarray], num_classes: int,
                 counts: np.ndarray, workers: int = 0) -> dict:
    """The whole-map metrics of every image (``metrics.image_metrics``), as a record stores
    them: the thin-structure class (binary data), the NSD tolerance, per-metric lists in
    image order, and the seconds they took. ``workers`` > 1: computed in that many processes
    (the same values, in the same order)."""
    start = time.perf_counter()
    classes = foreground_classes(num_classes)
    thin = thin_class(counts) if num_classes <= 2 else None
    per_image = _per_image(preds, masks, classes, thin, workers)
    values = {k: [d[k] for d in per_image] for k in per_image[0]} if per_image else {}
    return {"thin_class": thin, "nsd_tolerance": NSD_TOLERANCE, "values": values,
            "time_s": time.perf_counter() - start}


def validation_scores(model, spec, images, masks, num_classes, ex, select: str = "dice") -> tuple[float, float]:
    """(Dice, the ``select`` metric) of ``model`` on ``images`` (the validation split), as
    the run executes (``ex``), each the mean over images as the report takes it (a metric
    of whole maps: NaN images left out)."""
    preds = predict_classes(model, spec, images, ex)
    counts = score(preds, masks, num_classes)
    dice = summarize(counts)["dice"]
    if select == "dice":
        return dice, dice
    if metric(select).from_counts:
        return dice, nanmean(per_image_from_counts(counts, select))
    values = image_scores(preds, masks, num_classes, counts)["values"]
    if select not in values:
        raise ValueError(f"protocol.select {select!r}: not measured on data of {num_classes} classes "
                         f"(whole-map metrics here: {', '.join(values)})")
    return dice, nanmean(values[select])
