"""What data a run uses: the `DataSpec`, and `DataError` for every data problem.

A `DataSpec` is a small frozen value.  Its fields are validated on construction
(fractions become floats, a path-like root a string), so that the same data set
always has the same canonical JSON and therefore the same `key`.

Rules checked here (each violation is a one-line `DataError` naming the key), by the
same rules as every other table (`harness.config`: integers are ints, never 3.0 or "3"):
  * name is "membranes", "faint-membranes", "shapes" or "folder"; a folder spec needs `root`.
  * layout is "auto", "pairs", "isbi", "voc" or "stack".
  * split is "holdout" (train/val/test by the fractions) or "kfold" (``folds`` >= 2
    folds; each image is tested once, validation carved from the training folds by
    val_fraction; test_fraction is not used).
  * n_images >= 3, size >= 16, seed >= 0 (integers).
  * 0 < val_fraction, 0 < test_fraction and val_fraction + test_fraction < 1.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from ..config import check_keys, choice, default_label, fraction, integer
from ..fileio import stable_key

NAMES = ("membranes", "faint-membranes", "shapes", "folder")
SYNTHETIC_NAMES = ("membranes", "faint-membranes", "shapes")
LAYOUTS = ("auto", "pairs", "isbi", "voc", "stack")
SPLITS = ("holdout", "kfold")


class DataError(ValueError):
    """A problem with the data or the data spec.

    The message is always ONE line that names the file, folder or key at fault and
    says what was expected; line breaks in the text given are folded into spaces.
    """

    def __init__(self, message: object):
        super().__init__(re.sub(r"\s*[\r\n]+\s*", " ", str(message)).strip())


@dataclass(frozen=True)
class DataSpec:
    """Which data set, and how it is split.  See the module docstring for the rules."""

    name: str = "membranes"  # "membranes" | "faint-membranes" | "shapes" | "folder"
    root: str | None = None  # folder path when name == "folder"
    layout: str = "auto"  # "pairs" | "isbi" | "voc" | "stack" | "auto" (folder only)
    n_images: int = 240  # synthetic only
    size: int = 128  # synthetic only: square image side
    seed: int = 0  # data seed: fixes generation AND the split
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split: str = "holdout"  # "holdout" | "kfold"
    folds: int = 5  # kfold only: the number of folds (each image is tested once per seed)

    def __post_init__(self) -> None:
        try:
            self._check()
        except ValueError as e:  # the shared checks raise ValueError; data problems are DataErrors
            raise DataError(e) from None

    def _check(self) -> None:
        choice("data.name", self.name, NAMES)
        choice("data.layout", self.layout, LAYOUTS)
        if self.root is not None:
            if not isinstance(self.root, (str, os.PathLike)) or not str(self.root):
                raise DataError(f"data.root: expected a folder path, got {self.root!r}")
            object.__setattr__(self, "root", os.fspath(self.root))
        if self.name == "folder" and self.root is None:
            raise DataError("data.root: a 'folder' data spec needs root (the data folder)")
        integer("data.n_images", self.n_images, 3)
        integer("data.size", self.size, 16)
        integer("data.seed", self.seed, 0)
        choice("data.split", self.split, SPLITS)
        integer("data.folds", self.folds, 2)
        if self.split == "kfold" and self.synthetic and self.folds > self.n_images:
            raise DataError(f"data.folds: {self.folds} folds of {self.n_images} images; expected at most "
                            f"one fold per image")
        object.__setattr__(self, "val_fraction", fraction("data.val_fraction", self.val_fraction))
        object.__setattr__(self, "test_fraction", fraction("data.test_fraction", self.test_fraction))
        if self.val_fraction + self.test_fraction >= 1.0:
            raise DataError(f"data.val_fraction + data.test_fraction: expected a sum below 1, got "
                            f"{self.val_fraction} + {self.test_fraction}")

    def to_dict(self) -> dict:
        """A plain JSON-able dict of every field (a holdout spec leaves out ``split`` and
        ``folds``, so that its key is the key it had before k-fold existed)."""
        d = asdict(self)
        if self.split == "holdout":
            del d["split"], d["folds"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DataSpec":
        """Build from a dict (e.g. a TOML table); an unknown key is a DataError naming it."""
        try:
            check_keys(d, [f.name for f in fields(cls)], "data")
        except ValueError as e:
            raise DataError(e) from None
        return cls(**dict(d))

    @property
    def key(self) -> str:
        """Short stable hash of the canonical JSON: sha1(sorted-key JSON)[:12]."""
        return stable_key(self.to_dict(), 12)

    @property
    def synthetic(self) -> bool:
        return self.name in SYNTHETIC_NAMES

    @property
    def default_label(self) -> str:
        """How a report names this data set when the sweep gives no label: the built-in
        set's name, or the folder's name."""
        return default_label(self.name, self.root)
