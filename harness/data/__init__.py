"""Data for the harness: built-in synthetic sets and your own folders, one split rule.

    from harness.data import DataSpec, load_dataset
    data = load_dataset(DataSpec("membranes", n_images=240, seed=0))
    train_images, train_masks, train_ids = data.subset("train")

Images are float32 (C, H, W) in [0, 1]; masks int64 (H, W) with class indices
0..num_classes-1 and 255 = ignore (voc only).  The split is fixed by the data seed.

Modules:
  spec       ``DataSpec`` (what a data set is, by its fields) and ``DataError``
  dataset    ``Dataset``, the split rule and folds, the size check
  synthetic  the built-in sets (membranes, shapes, ...)
  files      reading one image, mask or TIFF stack (one-line errors naming the file)
  folders    folder layouts (pairs, isbi, voc, stacks): finding and reading them
  loader     ``load_dataset`` and its caches (memory, disk)
"""

from .dataset import Dataset, check_min_size, make_folds, make_splits
from .loader import clear_memory_cache, default_cache_dir, load_dataset
from .spec import DataError, DataSpec

__all__ = [
    "DataError",
    "DataSpec",
    "Dataset",
    "check_min_size",
    "clear_memory_cache",
    "default_cache_dir",
    "load_dataset",
    "make_folds",
    "make_splits",
]
