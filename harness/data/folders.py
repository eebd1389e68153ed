"""Your own data from a folder: the pairs, isbi, voc and stack layouts.

Layouts (`DataSpec.layout`; "auto" tries them in this order, by folder and file names):
  voc    root/JPEGImages/<id>.jpg, root/SegmentationClass/<id>.png and the lists
         root/ImageSets/Segmentation/{train,val}.txt (test.txt optional), one id per
         line (the first word of each non-blank line).  The split comes from the
         lists.  Without test.txt the test split is carved out of val: the val ids,
         sorted and permuted by `default_rng(spec.seed)`, give their first
         len(val) // 2 to test (so val.txt then needs at least 2 ids).  Images not
         named in any list are not loaded.
  pairs  root/images/ and root/masks/, matched by file stem (img.jpg + img.png).
  isbi   root/image/ and root/label/, matched by stem; or root/train/image/ and
         root/train/label/ (the seed's data/train/ layout; a test/ folder without
         labels is ignored).
  stack  multi-page TIFF stacks in root (ISBI 2012 style), read with tifffile, one
         image per frame, ids "<image-file-stem>:<frame>" (frame counted from 0).
         Pairs: X-volume.tif with X-labels.tif or X-label.tif, and images.tif with
         masks.tif (.tif or .tiff).  A volume without labels (test-volume.tif) is
         ignored; every labelled pair in the folder is read.  The two stacks of a pair
         must hold the same number of frames of the same size; a single-page TIFF is a
         stack of 1 frame.  Pages are gray (HxW) or RGB(A) (HxWx3, HxWx4, or planar):
         an RGB(A) image stack gives RGB images.
pairs, isbi and stack are split by the seeded rule in `dataset.py`.  Image files are
those ending in one of IMAGE_EXTS; other files are ignored, as are masks without an image.

Images become float32 (C, H, W) in [0, 1] by one scaling rule (`files.scale_image`).
Masks are read as integers: palette PNGs give their palette indices, an RGB(A) mask
whose channels are equal gives one channel (a truly coloured one is an error).  With
U the set of values over all masks (voc: without 255), the classes are:
  * U within {0, 1}          -> binary, class_values [0, 1];
  * U within {0, 255}        -> binary, class_values [0, 255] (255 becomes class 1);
  * U == {0, 1, ..., K-1}    -> K classes, values kept;
  * U has two values (0/128) -> binary, the smaller is class 0;
  * otherwise (not voc)      -> DataError naming the first mask (in id order) with a
    value outside {0, 255} if U contains 255, else outside {0..len(U)-1};
  * voc: any U (indices < 255) is accepted; the sorted values map to 0..K-1, and
    255 stays 255 (ignore).  K must be at least 2.
Masks hold the class index (the position in class_values), int64.

Every problem is a one-line DataError naming the file or folder at fault; nothing is
ever written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from ..metrics import IGNORE
from .dataset import Dataset, seeded_order, split_dataset
from .files import planar_hint, read_image, read_mask, read_stack_pair
from .spec import DataError, DataSpec

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".pgm", ".ppm", ".pbm")
STACK_EXTS = (".tif", ".tiff")
VOC_IMAGES, VOC_MASKS, VOC_LISTS = "JPEGImages", "SegmentationClass", os.path.join("ImageSets", "Segmentation")
EXPECTED_LAYOUTS = (
    "images/ + masks/ (pairs), image/ + label/ or train/image/ + train/label/ (isbi), "
    "JPEGImages/ + SegmentationClass/ + ImageSets/Segmentation/ (voc), "
    "or X-volume.tif + X-labels.tif or images.tif + masks.tif (stack)"
)


@dataclass
class FolderPlan:
    """What a folder data set consists of, found before any image is read."""

    root: Path
    layout: str
    items: list[tuple[str, Path, Path]]  # (id, image file, mask file), sorted by id (stack: by frame)
    splits: dict[str, list[int]] | None  # voc: from the lists (test may be absent); else None
    list_files: list[Path]
    frames: list[int] | None = None  # stack: each item's frame in its image and label stacks

    def fingerprint(self) -> tuple:
        """Sizes and modification times of every file: changes when the data does."""
        files = list(dict.fromkeys(p for _, image, mask in self.items for p in (image, mask))) + self.list_files
        stats = [(str(p), p.stat()) for p in files]
        return tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats)


# ----------------------------------------------------------------------------- layout


def _isbi_base(root: Path) -> Path | None:
    for base in (root, root / "train"):
        if (base / "image").is_dir() and (base / "label").is_dir():
            return base
    return None


def _stack_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image stack, label stack) of every labelled stack in `root` (see the module docstring)."""
    tiffs, pairs = _index(root, STACK_EXTS), []
    for stem, image in sorted(tiffs.items()):
        if stem == "images":
            label_stems = ["masks"]
        elif stem.endswith("-volume"):
            label_stems = [stem[: -len("volume")] + "labels", stem[: -len("volume")] + "label"]
        else:
            continue
        labels = [tiffs[s] for s in label_stems if s in tiffs]
        if len(labels) > 1:
            raise DataError(f"image stack {image} has two label stacks, {labels[0]} and {labels[1]}; expected one")
        if labels:
            pairs.append((image, labels[0]))
    return pairs


def detect_layout(root: Path) -> str:
    """The layout of `root` judged by its folder and file names (voc, pairs, isbi, stack)."""
    if (root / VOC_IMAGES).is_dir() and (root / VOC_MASKS).is_dir():
        return "voc"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "pairs"
    if _isbi_base(root) is not None:
        return "isbi"
    if _stack_pairs(root):
        return "stack"
    raise DataError(f"data folder {root}: no known layout found; expected {EXPECTED_LAYOUTS}")


def _index(folder: Path, exts: tuple[str, ...] = IMAGE_EXTS) -> dict[str, Path]:
    """stem -> file ending in one of `exts` in `folder` (not recursive); a stem twice is an error."""
    found: dict[str, Path] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise DataError(f"cannot list the folder {folder}: {exc}") from None
    for path in entries:
        if path.name.startswith(".") or path.suffix.lower() not in exts or not path.is_file():
            continue
        if path.stem in found:
            raise DataError(f"two files with the stem {path.stem!r}: {found[path.stem]} and {path}; expected one")
        found[path.stem] = path
    return found


def _require_dirs(root: Path, layout: str, *names: str) -> None:
    for name in names:
        if not (root / name).is_dir():
            raise DataError(
                f"data folder {root}: layout {layout!r} expects the folder {root / name}, which is missing"
            )


def plan_folder(spec: DataSpec) -> FolderPlan:
    """Find the files of a folder data set and check that they pair up."""
    root = Path(spec.root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data folder {root} is not a folder")
    layout = detect_layout(root) if spec.layout == "auto" else spec.layout
    if layout == "voc":
        return _plan_voc(root)
    if layout == "stack":
        return _plan_stack(root)
    if layout == "pairs":
        _require_dirs(root, layout, "images", "masks")
        image_dir, mask_dir = root / "images", root / "masks"
    else:
        base = _isbi_base(root)
        if base is None:
            raise DataError(
                f"data folder {root}: layout 'isbi' expects image/ and label/ folders in it or in {root / 'train'}"
            )
        image_dir, mask_dir = base / "image", base / "label"
    images, masks = _index(image_dir), _index(mask_dir)
    if not images:
        raise DataError(f"no images found in {image_dir}: expected files ending in {', '.join(IMAGE_EXTS)}")
    items = []
    for stem, image in sorted(images.items()):
        if stem not in masks:
            raise DataError(f"image {image} has no mask: expected {mask_dir / stem}.png (or another image type)")
        items.append((stem, image, masks[stem]))
    if len(items) < 3:
        raise DataError(f"{image_dir}: found {len(items)} image/mask pair(s); need at least 3 for train/val/test")
    return FolderPlan(root, layout, items, None, [])


def _stack_frames(path: Path) -> int:
    try:
        with tifffile.TiffFile(path) as tif:
            return len(tif.pages)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for a bad file
        raise DataError(f"cannot read the TIFF stack {path}: {type(exc).__name__}: {exc}") from None


def _plan_stack(root: Path) -> FolderPlan:
    pairs = _stack_pairs(root)
    if not pairs:
        raise DataError(f"data folder {root}: layout 'stack' expects X-volume.tif with X-labels.tif (or "
                        "X-label.tif), or images.tif with masks.tif; no labelled stack found")
    items, frames = [], []
    for image, labels in pairs:
        n_image, n_label = _stack_frames(image), _stack_frames(labels)
        if n_image != n_label:
            raise DataError(f"image stack {image} has {n_image} frame(s) but its label stack {labels} has "
                            f"{n_label}; expected one label frame per image frame"
                            f"{planar_hint(image) or planar_hint(labels)}")
        items += [(f"{image.stem}:{k}", image, labels) for k in range(n_image)]
        frames += range(n_image)
    if len(items) < 3:
        raise DataError(f"{root}: found {len(items)} stack frame(s); need at least 3 for train/val/test")
    return FolderPlan(root, "stack", items, None, [], frames)


def _read_list(path: Path) -> list[tuple[int, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read list file {path}: {exc}") from None
    seen, out = set(), []
    for number, line in enumerate(lines, 1):
        words = line.split()
        if words and words[0] not in seen:
            seen.add(words[0])
            out.append((number, words[0]))
    return out


def _plan_voc(root: Path) -> FolderPlan:
    _require_dirs(root, "voc", VOC_IMAGES, VOC_MASKS, VOC_LISTS)
    lists_dir = root / VOC_LISTS
    list_files = {name: lists_dir / f"{name}.txt" for name in ("train", "val", "test")}
    for name in ("train", "val"):
        if not list_files[name].is_file():
            raise DataError(f"voc data folder {root}: missing the split list {list_files[name]}")
    if not list_files["test"].is_file():
        del list_files["test"]
    images, masks = _index(root / VOC_IMAGES), _index(root / VOC_MASKS)

    split_ids: dict[str, list[str]] = {}
    listed_in: dict[str, Path] = {}
    for name, path in list_files.items():
        split_ids[name] = []
        for number, image_id in _read_list(path):
            if image_id in listed_in:
                raise DataError(f"{path} line {number}: {image_id!r} is also listed in {listed_in[image_id]}; "
                                "expected disjoint splits")
            if image_id not in images:
                raise DataError(f"{path} line {number}: image {image_id!r} not found in {root / VOC_IMAGES}")
            if image_id not in masks:
                raise DataError(f"image {images[image_id]} has no mask: expected "
                                f"{root / VOC_MASKS / image_id}.png")
            listed_in[image_id] = path
            split_ids[name].append(image_id)
        if not split_ids[name]:
            raise DataError(f"{path} lists no images; expected one image id per line")

    if "test" not in split_ids and len(split_ids["val"]) < 2:
        raise DataError(f"{list_files['val']} lists 1 image; need at least 2 to carve out a test split, "
                        f"or add {lists_dir / 'test.txt'}")
    ids = sorted(listed_in)
    position = {image_id: i for i, image_id in enumerate(ids)}
    splits = {name: sorted(position[i] for i in names) for name, names in split_ids.items()}
    items = [(image_id, images[image_id], masks[image_id]) for image_id in ids]
    return FolderPlan(root, "voc", items, splits, list(list_files.values()))


def _carve_test(val: list[int], ids: list[str], seed: int) -> tuple[list[int], list[int]]:
    """voc without test.txt: (val, test) from val, half of it to test, by the data seed."""
    shuffled = seeded_order(val, ids, seed)
    n_test = len(shuffled) // 2
    return sorted(shuffled[n_test:]), sorted(shuffled[:n_test])


def _classes(values: list[np.ndarray], paths: list[Path], layout: str) -> list[int]:
    """class_values from the distinct values of each mask (see the module docstring)."""
    found = sorted(set().union(*(set(v.tolist()) for v in values)))
    if layout == "voc":
        for v, path in zip(values, paths):
            if v.max() > IGNORE:
                raise DataError(f"mask {path} has the value {v.max()}; expected VOC class indices 0..254 "
                                "or 255 (ignore)")
        classes = [v for v in found if v != IGNORE]
        if len(classes) < 2:
            raise DataError(f"masks in {paths[0].parent} hold only the class value(s) {classes}; "
                            "expected at least 2 classes")
        return classes
    present = set(found)
    if len(found) < 2:
        raise DataError(f"masks in {paths[0].parent} hold only the value {found[0]} everywhere; expected "
                        f"at least two classes (e.g. 0/1 or 0/255) to segment")
    if present <= {0, 1}:
        return [0, 1]
    if present <= {0, IGNORE}:
        return [0, IGNORE]
    if found == list(range(len(found))) or len(found) == 2:
        return found
    expected = {0, IGNORE} if IGNORE in present else set(range(len(found)))
    for v, path in zip(values, paths):
        outside = sorted(set(v.tolist()) - expected)
        if outside:
            raise DataError(
                f"mask {path} has the value {outside[0]}, outside the expected classes {sorted(expected)}; "
                f"masks must be 0/255, hold two values, or class indices 0..K-1 (values found: {found})"
            )
    raise AssertionError("unreachable")


def read_folder(plan: FolderPlan, spec: DataSpec) -> Dataset:
    """Read the images and masks of a plan into a Dataset."""
    images, raw_masks, mask_values = [], [], []
    first = None
    stacks: dict[Path, tuple[np.ndarray, np.ndarray]] = {}  # stack layout: each pair read once
    for i, (_image_id, image_path, mask_path) in enumerate(plan.items):
        if plan.frames is None:
            image, mask = read_image(image_path), read_mask(mask_path)
        else:
            if image_path not in stacks:
                stacks[image_path] = read_stack_pair(image_path, mask_path)
            image, mask = (stack[plan.frames[i]] for stack in stacks[image_path])
        if first is None:
            first = (image_path, image.shape[0])
        elif image.shape[0] != first[1]:
            raise DataError(
                f"image {image_path} has {image.shape[0]} channel(s) but {first[0]} has {first[1]}; "
                "expected all grayscale or all RGB"
            )
        if image.shape[1:] != mask.shape:
            raise DataError(
                f"image {image_path} is {image.shape[1]}x{image.shape[2]} (HxW) but its mask {mask_path} is "
                f"{mask.shape[0]}x{mask.shape[1]}; expected the same size"
            )
        images.append(image)
        raw_masks.append(mask)
        mask_values.append(np.unique(mask))

    mask_paths = [mask_path for _, _, mask_path in plan.items]
    class_values = _classes(mask_values, mask_paths, plan.layout)
    table = np.asarray(class_values)
    masks = []
    for raw in raw_masks:
        mask = np.searchsorted(table, raw).astype(np.int64)
        if plan.layout == "voc":
            mask[raw == IGNORE] = IGNORE
        masks.append(mask)

    ids = [image_id for image_id, _, _ in plan.items]
    listed = None
    if plan.splits is not None and "test" not in plan.splits:
        val, test = _carve_test(plan.splits["val"], ids, spec.seed)
        listed = {"train": plan.splits["train"], "val": val, "test": test}
    elif plan.splits is not None:
        listed = dict(plan.splits)
    splits, folds = split_dataset(spec, ids, listed)
    return Dataset(
        images=images,
        masks=masks,
        ids=ids,
        paths=[str(image_path) for _, image_path, _ in plan.items],
        num_classes=len(class_values),
        class_values=[int(v) for v in class_values],
        in_channels=first[1],
        splits=splits,
        spec=spec,
        layout=plan.layout,
        folds=folds,
    )
