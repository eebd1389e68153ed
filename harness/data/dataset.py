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
"""

from __future__ import annotations

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
        h = hashlib.sha1(canonical_json({"ids": self.ids, "splits": self.splits,
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
