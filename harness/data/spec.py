"""What data a run uses: the `DataSpec`, and `DataError` for every data problem.

A `DataSpec` is a small frozen value.  Its fields are normalised on construction
(ints are ints, fractions are floats, a path-like root is a string), so that the
same data set always has the same canonical JSON and therefore the same `key`.

Rules checked here (each violation is a one-line `DataError` naming the key):
  * name is "membranes", "shapes" or "folder"; a folder spec needs `root`.
  * layout is "auto", "pairs", "isbi" or "voc".
  * n_images >= 3, size >= 16, seed >= 0 (integers).
  * 0 < val_fraction, 0 < test_fraction and val_fraction + test_fraction < 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

NAMES = ("membranes", "shapes", "folder")
SYNTHETIC_NAMES = ("membranes", "shapes")
LAYOUTS = ("auto", "pairs", "isbi", "voc")


class DataError(ValueError):
    """A problem with the data or the data spec.

    The message is always ONE line that names the file, folder or key at fault and
    says what was expected; line breaks in the text given are folded into spaces.
    """

    def __init__(self, message: object):
        super().__init__(re.sub(r"\s*[\r\n]+\s*", " ", str(message)).strip())


def _as_int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DataError(f"DataSpec.{key}: expected an integer >= {minimum}, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise DataError(f"DataSpec.{key}: expected an integer >= {minimum}, got {value!r}") from None
    if not number.is_integer() or number < minimum:
        raise DataError(f"DataSpec.{key}: expected an integer >= {minimum}, got {value!r}")
    return int(number)


def _as_fraction(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0.0 < number < 1.0:
        raise DataError(f"DataSpec.{key}: expected a fraction strictly between 0 and 1, got {value!r}")
    return number


@dataclass(frozen=True)
class DataSpec:
    """Which data set, and how it is split.  See the module docstring for the rules."""

    name: str = "membranes"  # "membranes" | "shapes" | "folder"
    root: str | None = None  # folder path when name == "folder"
    layout: str = "auto"  # "pairs" | "isbi" | "voc" | "auto" (folder only)
    n_images: int = 240  # synthetic only
    size: int = 128  # synthetic only: square image side
    seed: int = 0  # data seed: fixes generation AND the split
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        def put(key: str, value: Any) -> None:
            object.__setattr__(self, key, value)

        if self.name not in NAMES:
            raise DataError(f"DataSpec.name: expected one of {', '.join(NAMES)}, got {self.name!r}")
        if self.layout not in LAYOUTS:
            raise DataError(f"DataSpec.layout: expected one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.root is not None:
            if not isinstance(self.root, (str, os.PathLike)) or not str(self.root):
                raise DataError(f"DataSpec.root: expected a folder path, got {self.root!r}")
            put("root", os.fspath(self.root))
        if self.name == "folder" and self.root is None:
            raise DataError("DataSpec.root: a 'folder' data spec needs root (the data folder)")
        put("n_images", _as_int("n_images", self.n_images, 3))
        put("size", _as_int("size", self.size, 16))
        put("seed", _as_int("seed", self.seed, 0))
        put("val_fraction", _as_fraction("val_fraction", self.val_fraction))
        put("test_fraction", _as_fraction("test_fraction", self.test_fraction))
        if self.val_fraction + self.test_fraction >= 1.0:
            raise DataError(
                "DataSpec.val_fraction + DataSpec.test_fraction: expected a sum below 1, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )

    def to_dict(self) -> dict:
        """A plain JSON-able dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DataSpec":
        """Build from a dict (e.g. a TOML table); an unknown key is a DataError naming it."""
        if not isinstance(d, Mapping):
            raise DataError(f"DataSpec: expected a mapping of fields, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        for key in d:
            if key not in known:
                raise DataError(f"DataSpec: unknown key {key!r} (expected one of: {', '.join(known)})")
        return cls(**dict(d))

    @property
    def key(self) -> str:
        """Short stable hash of the canonical JSON: sha1(sorted-key JSON)[:12]."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]

    @property
    def synthetic(self) -> bool:
        return self.name in SYNTHETIC_NAMES
