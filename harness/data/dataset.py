"""The loaded data set (`Dataset`), the seeded train/val/test split, and size checks.

Split rule (synthetic data and the pairs/isbi folder layouts):
  * order the images by id (sorted), then permute that order with
    `numpy.random.default_rng(spec.seed).permutation(n)`;
  * test = the first round(n * test_fraction) of the permuted order,
    val  = the next round(n * val_fraction), train = the rest;
  * with n >= 3, test and val hold at least one image each and train at least one
    (when the rounding leaves train empty, the larger of val/test gives one back).
The split therefore depends on the data seed and the ids only: never on the run
seed, the file system order, or the model.  Index lists are returned sorted.
(The voc layout takes its split from its list files; see `folders.py`.)

K-fold rule (``split = "kfold"``, every layout; voc's lists then only say which images
are loaded):
  * the same seeded order as above, cut into K contiguous folds whose sizes differ by at
    most one (``numpy.array_split``); fold k's test split is the k-th piece;
  * val = the first max(1, round(m * val_fraction)) of the other m images in the seeded
    order, train = the rest (at least one): validation is carved from the training
    folds, never from the test fold;
  * so every image is tested exactly once over the K folds, and the folds are the same
    for every variant and run seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..fileio import canonical_json
from .spec import DataError, DataSpec


def seeded_order(indices: list[int], ids: list[str], seed: int) -> list[int]:
    """`indices` sorted by id, then permuted by `default_rng(seed)`: depends on the data
    seed and the ids only (the split rule, and voc's test split carved from val)."""
    ordered = sorted(indices, key=lambda i: ids[i])
    return [ordered[j] for j in np.random.default_rng(seed).permutation(len(ordered))]


def make_splits(ids: list[str], seed: int, val_fraction: float, test_fraction: float) -> dict[str, list[int]]:
    """Seeded split of `ids` into train/val/test index lists (see the module docstring)."""
    n = len(ids)
    if n < 3:
        raise DataError(f"cannot split {n} image(s) into train/val/test: need at least 3")
    shuffled = seeded_order(list(range(n)), ids, seed)
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    while n - n_test - n_val < 1:
        if n_val >= n_test and n_val > 1:
            n_val -= 1
        else:
            n_test -= 1
    return {
        "train": sorted(shuffled[n_test + n_val:]),
        "val": sorted(shuffled[n_test:n_test + n_val]),
        "test": sorted(shuffled[:n_test]),
    }


def make_folds(ids: list[str], seed: int, folds: int, val_fraction: float) -> list[dict[str, list[int]]]:
    """The K train/val/test splits of the k-fold rule (see the module docstring)."""
    n = len(ids)
    if folds > n:
        raise DataError(f"data.folds: {folds} folds of {n} images; expected at most one fold per image")
    shuffled = seeded_order(list(range(n)), ids, seed)
    out = []
    for k, test in enumerate(np.array_split(np.asarray(shuffled), folds)):
        rest = [i for i in shuffled if i not in set(test.tolist())]
        n_val = max(1, round(len(rest) * val_fraction))
        if len(rest) - n_val < 1:
            raise DataError(f"data.folds: fold {k} of {folds} leaves {len(rest)} image(s) outside its "
                            f"test fold, too few for a validation and a training image; use fewer folds "
                            f"or more images")
        out.append({"train": sorted(rest[n_val:]), "val": sorted(rest[:n_val]), "test": sorted(test.tolist())})
    return out


def split_dataset(spec: DataSpec, ids: list[str], listed: dict[str, list[int]] | None = None
                  ) -> tuple[dict[str, list[int]], list[dict[str, list[int]]] | None]:
    """(splits, folds) of a data set: k-fold folds (splits = fold 0), or the holdout split
    (the seeded rule, or ``listed``, the voc lists' split; folds = None)."""
    if spec.split == "kfold":
        folds = make_folds(ids, spec.seed, spec.folds, spec.val_fraction)
        return folds[0], folds
    if listed is not None:
        return listed, None
    return make_splits(ids, spec.seed, spec.val_fraction, spec.test_fraction), None


@dataclass
class Dataset:
    """Images, masks and the split of one data set.  Treat it as read-only: it is
    shared through the in-process cache, so copy an array before changing it."""

    images: list[np.ndarray]  # float32, shape (C, H, W), values in [0, 1]
    masks: list[np.ndarray]  # int64, shape (H, W), class index per pixel; 255 = ignore
    ids: list[str]  # image stem, or "membranes/0007" for synthetic
    paths: list[str | None]  # source image file for error messages (None for synthetic)
    num_classes: int  # classes INCLUDING background (binary data -> 2)
    class_values: list[int]  # the raw mask values of classes 0..K-1 (e.g. [0, 255])
    in_channels: int  # 1 for grayscale, 3 for RGB
    splits: dict[str, list[int]]  # {"train": [...], "val": [...], "test": [...]}
    spec: DataSpec
    layout: str = ""  # "synthetic", or the folder layout actually read ("pairs", ...)
    folds: list[dict[str, list[int]]] | None = None  # k-fold: every fold's splits
    fold: int | None = None  # k-fold: the fold whose splits `splits` is

    def __post_init__(self) -> None:
        if self.folds is not None and self.fold is None:
            self.fold = 0

    def fold_views(self) -> list["Dataset"]:
        """One data set per fold, sharing the arrays (k-fold), else [self]."""
        if self.folds is None:
            return [self]
        views = []
        for k, splits in enumerate(self.folds):
            view = dataclasses.replace(self, splits=splits, fold=k)
            view.__dict__["content_key"] = self.content_key  # the same data: no second hash
            views.append(view)
        return views

    def __len__(self) -> int:
        return len(self.images)

    def name_of(self, index: int) -> str:
        """The source file of image `index` if it has one, else its id."""
        return self.paths[index] or self.ids[index]

    def subset(self, split: str) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
        """(images, masks, ids) of one split: "train", "val" or "test"."""
        if split not in self.splits:
            raise DataError(f"unknown split {split!r}: expected one of {', '.join(self.splits)}")
        idx = self.splits[split]
        return [self.images[i] for i in idx], [self.masks[i] for i in idx], [self.ids[i] for i in idx]

    @cached_property
    def content_key(self) -> str:
        """Hash of what was read: ids, split, class values and every image and mask array.
        It changes when the data does (files added, masks rewritten), not when a file is
        only copied or touched; part of the key of every run on folder data."""
        split = {"splits": self.splits} if self.folds is None else {"folds": self.folds}
        h = hashlib.sha1(canonical_json({"ids": self.ids, **split,
                                         "class_values": list(self.class_values)}).encode())
        for a in (*self.images, *self.masks):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:12]

    def summary(self) -> dict:
        """A JSON-able description: what a run record stores about its data."""
        heights = [im.shape[1] for im in self.images]
        widths = [im.shape[2] for im in self.images]
        return {
            "name": self.spec.name,
            "key": self.spec.key,
            "layout": self.layout,
            "root": self.spec.root,
            "n_images": len(self.images),
            "num_classes": self.num_classes,
            "class_values": list(self.class_values),
            "in_channels": self.in_channels,
            "split": self.spec.split,
            "fold": self.fold,
            "folds": None if self.folds is None else len(self.folds),
            "split_sizes": {k: len(v) for k, v in self.splits.items()},
            "split_ids": {k: [self.ids[i] for i in v] for k, v in self.splits.items()},
            "image_size": {"min_hw": [min(heights), min(widths)], "max_hw": [max(heights), max(widths)]},
        }


def check_min_size(data: Dataset, min_h: int, min_w: int) -> None:
    """DataError naming the first image (file, else id) smaller than min_h x min_w."""
    for i, image in enumerate(data.images):
        h, w = image.shape[-2:]
        if h < min_h or w < min_w:
            raise DataError(
                f"image {data.name_of(i)} is {h}x{w} (HxW), smaller than the required minimum {min_h}x{min_w}"
            )
