"""The test samples a report draws beside the stored predictions: test images (8-bit, for
display) and reference masks, one compressed file per data set, so a report needs no data."""
from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import write_atomic
from .layout import Layout


def write_samples(results: Path, data_key: str, ids: list[str], images: list[np.ndarray],
                  masks: list[np.ndarray]) -> None:
    """Store test images (float (C, H, W) in [0, 1], kept as 8-bit for display) and their
    reference masks (class index, IGNORE kept), so that a report needs no data set. A file
    that already holds the same samples is left alone."""
    arrays: dict[str, Any] = {"ids": np.asarray(ids, dtype=str)}  # Any: numpy's savez signature
    for i, (image, mask) in enumerate(zip(images, masks)):
        arrays[f"image{i}"] = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
        arrays[f"mask{i}"] = np.asarray(mask).astype(np.uint8)  # class indices < 255; IGNORE is 255
    path = Layout(results).samples(data_key)
    try:
        with np.load(path) as z:
            if set(z.files) == set(arrays) and all(np.array_equal(z[k], v) for k, v in arrays.items()):
                return
    except (OSError, ValueError, KeyError, zlib.error):
        pass  # none yet, or unreadable: write it
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, lambda f: f.write(buffer.getvalue()))


def read_samples(results: Path, data_key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """id -> (image as float (C, H, W) in [0, 1], reference mask); {} where none are stored."""
    path = Layout(results).samples(data_key)
    if not path.is_file():
        return {}
    try:
        with np.load(path) as z:
            return {str(i): (z[f"image{k}"].astype(np.float32) / 255, z[f"mask{k}"].astype(np.int64))
                    for k, i in enumerate(z["ids"])}
    except (OSError, ValueError, KeyError, zlib.error) as e:
        raise ValueError(f"{path}: not a samples file written by `unet-ablate run` "
                         f"({e.__class__.__name__})") from None
