"""`load_dataset`: a DataSpec in, a Dataset out, paid for once.

Caching:
  * in-process: the last few data sets loaded (MEMORY_ENTRIES) are kept and returned
    as the same object; folder data is keyed by the spec and the size and mtime of
    every file, so an edited folder is read again.
  * on disk (synthetic only): `<cache_dir>/<spec.key>.npz` with the uint8 images and
    masks, written atomically (temp file in the same folder + os.replace).  The
    default cache_dir is $UNET_ABLATE_CACHE, else ~/.cache/unet-ablate.  A cache file
    that cannot be read, or was written by another generator version, is
    regenerated; a cache folder that cannot be written only costs a logged warning.
Folder data is never written anywhere.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..fileio import canonical_json, write_atomic
from . import synthetic
from .dataset import Dataset, split_dataset
from .folders import plan_folder, read_folder
from .spec import DataError, DataSpec

GENERATOR_VERSION = 2  # bump when synthetic.py draws different images for the same spec
MEMORY_ENTRIES = 4
_MEMORY: "OrderedDict[tuple, Dataset]" = OrderedDict()
log = logging.getLogger("unet_ablate")


def default_cache_dir() -> str:
    return os.environ.get("UNET_ABLATE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "unet-ablate")


def clear_memory_cache() -> None:
    """Forget the data sets kept in this process (the disk cache stays)."""
    _MEMORY.clear()


def load_dataset(spec: DataSpec, cache_dir: str | None = None) -> Dataset:
    """Generate or read the data set of `spec`, with its split (see the module docstring)."""
    if not isinstance(spec, DataSpec):
        raise DataError(f"load_dataset: expected a DataSpec, got {type(spec).__name__}")
    if spec.synthetic:
        key: tuple = ("synthetic", spec.key)
        plan = None
    else:
        plan = plan_folder(spec)
        key = ("folder", spec.key, plan.fingerprint())
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    if plan is None:
        dataset = _synthetic_dataset(spec, *_load_or_generate(spec, Path(cache_dir or default_cache_dir())))
    else:
        dataset = read_folder(plan, spec)
    _MEMORY[key] = dataset
    while len(_MEMORY) > MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)
    return dataset


def _synthetic_dataset(spec: DataSpec, images_u8: np.ndarray, masks_u8: np.ndarray) -> Dataset:
    images = images_u8.astype(np.float32) / np.float32(255.0)
    masks = masks_u8.astype(np.int64)
    width = max(4, len(str(spec.n_images - 1)))
    ids = [f"{spec.name}/{i:0{width}d}" for i in range(spec.n_images)]
    class_values = synthetic.CLASS_VALUES[spec.name]
    splits, folds = split_dataset(spec, ids)
    return Dataset(
        images=list(images),
        masks=list(masks),
        ids=ids,
        paths=[None] * spec.n_images,
        num_classes=len(class_values),
        class_values=list(class_values),
        in_channels=synthetic.IN_CHANNELS[spec.name],
        splits=splits,
        spec=spec,
        layout="synthetic",
        folds=folds,
    )


def _stamp(spec: DataSpec) -> str:
    return canonical_json({"spec": spec.to_dict(), "version": GENERATOR_VERSION})


def _load_or_generate(spec: DataSpec, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    path = cache_dir / f"{spec.key}.npz"
    if path.is_file():
        try:
            with np.load(path) as cached:
                if str(cached["stamp"]) == _stamp(spec):
                    return cached["images"], cached["masks"]
        except Exception:  # noqa: BLE001 - a damaged or foreign file: generate again and replace it
            pass
    images, masks = synthetic.generate(spec.name, spec.n_images, spec.size, spec.seed)
    try:
        write_atomic(path, lambda f: np.savez(f, images=images, masks=masks, stamp=np.array(_stamp(spec))))
    except OSError as exc:
        log.warning("could not write the data cache %s: %s", path, exc)
    return images, masks
