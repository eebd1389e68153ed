"""Tests of harness.data: synthetic sets, folder layouts, splits, caching and errors."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data import (
    DataError,
    Dataset,
    DataSpec,
    check_min_size,
    clear_memory_cache,
    load_dataset,
    loader,
    make_splits,
    synthetic,
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test starts with an empty in-process cache and a private disk cache."""
    monkeypatch.setenv("UNET_ABLATE_CACHE", str(tmp_path / "default-cache"))
    clear_memory_cache()
    yield
    clear_memory_cache()


# ----------------------------------------------------------------------------- helpers


def _gray(h=20, w=24, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _binary_mask(h=20, w=24, seed=0, high=255) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[seed % h:, : 1 + seed % w] = high
    return mask


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path)
    return path


def _make_pairs(root: Path, n=5, image_dir="images", mask_dir="masks", image_ext=".png", rgb=False) -> Path:
    for i in range(n):
        image = _gray(seed=i)
        if rgb:
            image = np.stack([image, image[::-1], 255 - image], -1)
        _save(root / image_dir / f"img{i:02d}{image_ext}", image)
        _save(root / mask_dir / f"img{i:02d}.png", _binary_mask(seed=i))
    return root


def _palette_mask(values: np.ndarray) -> Image.Image:
    image = Image.fromarray(values.astype(np.uint8), mode="P")
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [64, 64, 64] * 252 + [224, 224, 192]
    image.putpalette(palette)
    return image


def _make_voc(root: Path, n=8, with_test=False, class_ids=(1, 2)) -> Path:
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for i in range(n):
        rgb = np.stack([_gray(seed=i)] * 3, -1)
        Image.fromarray(rgb).save(root / "JPEGImages" / f"2007_{i:04d}.jpg")
        values = np.zeros((20, 24), np.uint8)
        values[4:14, 5:15] = class_ids[i % len(class_ids)]
        values[3, 4:16] = 255  # an object border marked "ignore", VOC style
        _palette_mask(values).save(root / "SegmentationClass" / f"2007_{i:04d}.png")
    ids = [f"2007_{i:04d}" for i in range(n)]
    lists = root / "ImageSets" / "Segmentation"
    if with_test:
        (lists / "train.txt").write_text("\n".join(ids[:4]) + "\n")
        (lists / "val.txt").write_text("\n".join(ids[4:6]) + "\n")
        (lists / "test.txt").write_text("\n".join(ids[6:]) + "\n")
    else:
        (lists / "train.txt").write_text("\n".join(ids[:4]) + "\n")
        (lists / "val.txt").write_text("\n".join(ids[4:]) + "\n")
    return root


def _folder_spec(root: Path, layout="auto", **kw) -> DataSpec:
    return DataSpec(name="folder", root=str(root), layout=layout, **kw)


def _error(spec: DataSpec) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(spec)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return message


def _files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*"))


def _check_dataset(data: Dataset) -> None:
    assert len(data.images) == len(data.masks) == len(data.ids) == len(data.paths)
    for image, mask in zip(data.images, data.masks):
        assert image.dtype == np.float32 and image.ndim == 3 and image.shape[0] == data.in_channels
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert mask.dtype == np.int64 and mask.shape == image.shape[1:]
        valid = mask[mask != 255]
        assert valid.min() >= 0 and valid.max() < data.num_classes
    everything = sorted(i for split in data.splits.values() for i in split)
    assert everything == list(range(len(data.images)))  # disjoint and covering
    assert all(data.splits[name] for name in ("train", "val", "test"))
    json.dumps(data.summary())


# ----------------------------------------------------------------------------- spec


def test_spec_round_trip_and_key():
    spec = DataSpec("shapes", n_images=50, size=64, seed=3)
    assert DataSpec.from_dict(spec.to_dict()) == spec
    assert spec.key == DataSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).key
    assert len(spec.key) == 12
    assert DataSpec("shapes", n_images=50, size=64, seed=4).key != spec.key
    # one integer rule for every table: a float or text count is refused, not normalised
    for bad in (240.0, "240", True):
        with pytest.raises(DataError, match="data.n_images: expected an integer >= 3"):
            DataSpec(n_images=bad)


def test_spec_rejects_unknown_key_and_bad_values():
    with pytest.raises(DataError, match="colour"):
        DataSpec.from_dict({"name": "shapes", "colour": "red"})
    for bad, key in [({"name": "cats"}, "name"), ({"layout": "coco"}, "layout"), ({"n_images": 2}, "n_images"),
                     ({"val_fraction": 0.6, "test_fraction": 0.5}, "val_fraction"), ({"name": "folder"}, "root"),
                     ({"seed": -1}, "seed"), ({"size": "big"}, "size")]:
        with pytest.raises(DataError, match=key):
            DataSpec.from_dict(bad)


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_generation_is_deterministic_per_seed():
    a_images, a_masks = synthetic.generate("membranes", 6, 48, seed=1)
    b_images, b_masks = synthetic.generate("membranes", 6, 48, seed=1)
    c_images, _ = synthetic.generate("membranes", 6, 48, seed=2)
    assert np.array_equal(a_images, b_images) and np.array_equal(a_masks, b_masks)
    assert not np.array_equal(a_images, c_images)
    # image i depends on (seed, i) only, not on how many images are drawn
    d_images, _ = synthetic.generate("membranes", 3, 48, seed=1)
    assert np.array_equal(d_images, a_images[:3])
    s1, _ = synthetic.generate("shapes", 4, 32, seed=1)
    s2, _ = synthetic.generate("shapes", 4, 32, seed=1)
    assert np.array_equal(s1, s2)


@pytest.mark.parametrize("name", ["membranes", "shapes"])
@pytest.mark.parametrize("size", [16, 33])
def test_synthetic_odd_and_small_sizes(name, size):
    images, masks = synthetic.generate(name, 3, size, seed=0)
    assert images.shape == (3, synthetic.IN_CHANNELS[name], size, size) and masks.shape == (3, size, size)


def test_membranes(tmp_path):
    data = load_dataset(DataSpec("membranes", n_images=24, size=64, seed=0), cache_dir=str(tmp_path))
    _check_dataset(data)
    assert data.in_channels == 1 and data.num_classes == 2 and data.class_values == [0, 1]
    assert data.images[0].shape == (1, 64, 64)
    assert data.ids[7] == "membranes/0007" and data.paths[7] is None and data.layout == "synthetic"
    fractions = np.array([(m == 0).mean() for m in data.masks])  # 0 = membrane (ISBI convention)
    assert 0.12 <= fractions.mean() <= 0.32
    assert fractions.min() > 0.05 and fractions.max() < 0.40
    # not a thresholding task: the darkest pixels are not all membrane
    images = np.stack(data.images)[:, 0]
    masks = np.stack(data.masks) == 0
    dark = images < np.quantile(images, fractions.mean())
    assert 2 * (dark & masks).sum() / (dark.sum() + masks.sum()) < 0.9


def test_shapes(tmp_path):
    data = load_dataset(DataSpec("shapes", n_images=40, size=48, seed=0), cache_dir=str(tmp_path))
    _check_dataset(data)
    assert data.in_channels == 3 and data.num_classes == 4 and data.class_values == [0, 1, 2, 3]
    assert data.images[0].shape == (3, 48, 48)
    empty = [m.max() == 0 for m in data.masks]
    assert 1 <= sum(empty) <= 0.35 * len(empty)
    assert set(np.unique(np.stack(data.masks)).tolist()) == {0, 1, 2, 3}


def test_cache_file_is_written_and_reused(tmp_path, monkeypatch):
    spec = DataSpec("membranes", n_images=6, size=32, seed=5)
    first = load_dataset(spec, cache_dir=str(tmp_path))
    assert (tmp_path / f"{spec.key}.npz").is_file()
    assert not list(tmp_path.glob("*.tmp"))
    assert load_dataset(spec, cache_dir=str(tmp_path)) is first  # in-process cache

    clear_memory_cache()
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: pytest.fail("regenerated despite the cache"))
    second = load_dataset(spec, cache_dir=str(tmp_path))
    assert second is not first
    for a, b in zip(first.images + first.masks, second.images + second.masks):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    assert first.splits == second.splits


def test_damaged_cache_is_regenerated(tmp_path):
    spec = DataSpec("shapes", n_images=4, size=32)
    (tmp_path / f"{spec.key}.npz").write_bytes(b"not a zip file")
    data = load_dataset(spec, cache_dir=str(tmp_path))
    images, _ = synthetic.generate("shapes", 4, 32, 0)
    assert np.array_equal(np.rint(np.stack(data.images) * 255).astype(np.uint8), images)
    with np.load(tmp_path / f"{spec.key}.npz") as cached:
        assert np.array_equal(cached["images"], images)


def test_default_cache_dir_from_environment(tmp_path):
    spec = DataSpec("membranes", n_images=3, size=32)
    load_dataset(spec)
    assert (tmp_path / "default-cache" / f"{spec.key}.npz").is_file()


# ----------------------------------------------------------------------------- splits


def test_split_rule():
    ids = [f"case{i:02d}" for i in range(20)]
    splits = make_splits(ids, 0, 0.15, 0.15)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [14, 3, 3]
    assert make_splits(ids, 0, 0.15, 0.15) == splits
    assert make_splits(ids, 1, 0.15, 0.15) != splits
    # the split follows the ids, not their order
    shuffled = ids[::-1]
    again = make_splits(shuffled, 0, 0.15, 0.15)
    assert {k: sorted(shuffled[i] for i in v) for k, v in again.items()} == \
        {k: sorted(ids[i] for i in v) for k, v in splits.items()}
    assert {k: len(v) for k, v in make_splits(ids[:3], 0, 0.15, 0.15).items()} == {"train": 1, "val": 1, "test": 1}
    assert min(len(v) for v in make_splits(ids[:3], 0, 0.5, 0.45).values()) == 1
    with pytest.raises(DataError, match="at least 3"):
        make_splits(ids[:2], 0, 0.15, 0.15)


def test_split_fixed_by_data_seed(tmp_path):
    def split_ids(seed):
        spec = DataSpec("membranes", n_images=20, size=32, seed=seed)
        return load_dataset(spec, str(tmp_path)).summary()["split_ids"]

    assert split_ids(3) == split_ids(3)
    assert split_ids(3) != split_ids(4)
    root = _make_pairs(tmp_path / "pairs", n=10)
    a = load_dataset(_folder_spec(root, seed=7)).summary()["split_ids"]
    clear_memory_cache()
    assert load_dataset(_folder_spec(root, seed=7)).summary()["split_ids"] == a
    assert sorted(sum(a.values(), [])) == [f"img{i:02d}" for i in range(10)]


# ----------------------------------------------------------------------------- folder layouts


def test_pairs_layout_binary_0_255(tmp_path):
    root = _make_pairs(tmp_path, n=6, image_ext=".jpg", rgb=True)
    data = load_dataset(_folder_spec(root, layout="pairs"))
    _check_dataset(data)
    assert data.layout == "pairs" and data.in_channels == 3
    assert data.num_classes == 2 and data.class_values == [0, 255]
    assert data.ids == [f"img{i:02d}" for i in range(6)]
    assert data.paths[0].endswith("img00.jpg")
    assert np.array_equal(data.masks[2], (_binary_mask(seed=2) == 255).astype(np.int64))
    assert load_dataset(_folder_spec(root)).layout == "pairs"  # auto


def test_pairs_multiclass_gray_and_16_bit(tmp_path):
    for i in range(4):
        _save(tmp_path / "images" / f"a{i}.tif", (_gray(seed=i).astype(np.uint16) * 257))
        mask = np.zeros((20, 24), np.uint8)
        mask[:, :6], mask[:, 6:12], mask[:, 12:18] = 1, 2, 3
        _save(tmp_path / "masks" / f"a{i}.png", mask)
    data = load_dataset(_folder_spec(tmp_path))
    _check_dataset(data)
    assert data.in_channels == 1 and data.num_classes == 4 and data.class_values == [0, 1, 2, 3]
    assert np.allclose(data.images[1][0], _gray(seed=1) / 255.0, atol=1e-6)


def test_pairs_gray_rgb_mask_rgba_and_palette_images(tmp_path):
    _save(tmp_path / "images" / "a.png", np.stack([_gray()] * 3 + [np.full((20, 24), 255, np.uint8)], -1))
    _save(tmp_path / "images" / "b.png", np.stack([_gray(seed=1)] * 3, -1), mode="P")
    _save(tmp_path / "images" / "c.jpg", np.stack([_gray(seed=2)] * 3, -1))
    for stem in "abc":
        _save(tmp_path / "masks" / f"{stem}.png", np.stack([_binary_mask(high=1)] * 3, -1))  # gray RGB mask
    _save(tmp_path / "masks" / "orphan.png", _binary_mask())  # a mask without an image is ignored
    data = load_dataset(_folder_spec(tmp_path, layout="pairs"))
    _check_dataset(data)
    assert data.in_channels == 3 and data.class_values == [0, 1] and data.ids == ["a", "b", "c"]


def test_isbi_layout(tmp_path):
    root = _make_pairs(tmp_path, n=5, image_dir="image", mask_dir="label")
    data = load_dataset(_folder_spec(root, layout="isbi"))
    _check_dataset(data)
    assert data.layout == "isbi" and data.in_channels == 1 and data.class_values == [0, 255]
    assert load_dataset(_folder_spec(root)).layout == "isbi"


def test_isbi_train_subfolder(tmp_path):
    root = tmp_path / "data"
    _make_pairs(root / "train", n=4, image_dir="image", mask_dir="label")
    _save(root / "test" / "0.png", _gray())  # the seed's unlabelled test images
    for layout in ("isbi", "auto"):
        clear_memory_cache()
        data = load_dataset(_folder_spec(root, layout=layout))
        assert data.layout == "isbi" and len(data.images) == 4
        assert "train" in data.paths[0]


def test_voc_layout_carves_test_from_val(tmp_path):
    root = _make_voc(tmp_path, n=8, class_ids=(1, 15))
    data = load_dataset(_folder_spec(root, layout="voc", seed=3))
    _check_dataset(data)
    assert data.layout == "voc" and data.in_channels == 3
    assert data.class_values == [0, 1, 15] and data.num_classes == 3
    assert all((m == 255).sum() == 12 for m in data.masks)  # ignore kept as 255
    assert set(np.unique(data.masks[1]).tolist()) == {0, 2, 255}  # palette index 15 -> class 2
    split = data.summary()["split_ids"]
    assert split["train"] == ["2007_0000", "2007_0001", "2007_0002", "2007_0003"]
    assert len(split["val"]) == 2 and len(split["test"]) == 2
    assert sorted(split["val"] + split["test"]) == ["2007_0004", "2007_0005", "2007_0006", "2007_0007"]
    clear_memory_cache()
    assert load_dataset(_folder_spec(root, seed=3)).summary()["split_ids"] == split  # auto, same seed


def test_voc_layout_with_test_list(tmp_path):
    root = _make_voc(tmp_path, n=8, with_test=True)
    data = load_dataset(_folder_spec(root))
    assert data.layout == "voc" and data.class_values == [0, 1, 2]
    assert data.summary()["split_ids"]["test"] == ["2007_0006", "2007_0007"]
    assert data.summary()["split_ids"]["val"] == ["2007_0004", "2007_0005"]


def test_folder_cache_sees_changes(tmp_path):
    root = _make_pairs(tmp_path, n=4)
    first = load_dataset(_folder_spec(root))
    assert load_dataset(_folder_spec(root)) is first
    _save(root / "images" / "img04.png", _gray(seed=9))
    _save(root / "masks" / "img04.png", _binary_mask())
    assert len(load_dataset(_folder_spec(root)).images) == 5


# ----------------------------------------------------------------------------- bad input


def test_missing_root_and_unknown_layout(tmp_path):
    assert "nowhere" in _error(_folder_spec(tmp_path / "nowhere"))
    (tmp_path / "stuff").mkdir()
    message = _error(_folder_spec(tmp_path / "stuff"))
    assert "stuff" in message and "pairs" in message and "voc" in message
    assert "masks" in _error(_folder_spec(_make_pairs(tmp_path / "p", mask_dir="labels"), layout="pairs"))


def test_empty_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    assert "images" in _error(_folder_spec(tmp_path))


def test_image_without_mask(tmp_path):
    root = _make_pairs(tmp_path, n=4)
    _save(root / "images" / "lonely.png", _gray())
    assert "lonely.png" in _error(_folder_spec(root))


def test_size_mismatch(tmp_path):
    root = _make_pairs(tmp_path, n=4)
    _save(root / "masks" / "img02.png", _binary_mask(h=21, w=24))
    message = _error(_folder_spec(root))
    assert "img02" in message and "20x24" in message and "21x24" in message


@pytest.mark.parametrize("which", ["images", "masks"])
def test_corrupt_file(tmp_path, which):
    root = _make_pairs(tmp_path, n=4)
    (root / which / "img01.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    before = _files(tmp_path)
    message = _error(_folder_spec(root))
    assert "img01.png" in message and which in message
    assert _files(tmp_path) == before  # nothing written on error


def test_mask_values_outside_classes(tmp_path):
    root = _make_pairs(tmp_path, n=4)
    mask = _binary_mask(seed=3)
    mask[0, 0] = 128  # an anti-aliased or resized 0/255 mask
    _save(root / "masks" / "img03.png", mask)
    message = _error(_folder_spec(root))
    assert "img03.png" in message and "128" in message and "[0, 255]" in message

    root = _make_pairs(tmp_path / "multi", n=4)
    for i, top in enumerate([1, 2, 5, 1]):
        _save(root / "masks" / f"img{i:02d}.png", _binary_mask(seed=i, high=top))
    assert "img02.png" in _error(_folder_spec(root))


def test_coloured_rgb_mask(tmp_path):
    root = _make_pairs(tmp_path, n=4)
    colour = np.zeros((20, 24, 3), np.uint8)
    colour[5:10, 5:10] = (128, 0, 0)
    _save(root / "masks" / "img01.png", colour)
    assert "img01.png" in _error(_folder_spec(root))


def test_mixed_channels(tmp_path):
    root = _make_pairs(tmp_path, n=4)
    _save(root / "images" / "img02.png", np.stack([_gray(), _gray(seed=5), _gray(seed=6)], -1))
    assert "img02.png" in _error(_folder_spec(root))


def test_too_few_images(tmp_path):
    root = _make_pairs(tmp_path, n=2)
    assert "images" in _error(_folder_spec(root)) and "at least 3" in _error(_folder_spec(root))


def test_voc_errors(tmp_path):
    root = _make_voc(tmp_path / "a")
    with open(root / "ImageSets" / "Segmentation" / "val.txt", "a") as f:
        f.write("2007_9999\n")
    message = _error(_folder_spec(root))
    assert "val.txt" in message and "2007_9999" in message

    root = _make_voc(tmp_path / "b")
    (root / "SegmentationClass" / "2007_0002.png").unlink()
    assert "2007_0002.jpg" in _error(_folder_spec(root))

    root = _make_voc(tmp_path / "c")
    (root / "ImageSets" / "Segmentation" / "train.txt").unlink()
    assert "train.txt" in _error(_folder_spec(root, layout="voc"))


def test_check_min_size(tmp_path):
    root = _make_pairs(tmp_path, n=4)
    data = load_dataset(_folder_spec(root))
    check_min_size(data, 20, 24)
    with pytest.raises(DataError) as info:
        check_min_size(data, 32, 32)
    assert "img00.png" in str(info.value) and "20x24" in str(info.value) and "32x32" in str(info.value)
    synthetic_ds = load_dataset(DataSpec("shapes", n_images=3, size=32))
    with pytest.raises(DataError, match="shapes/0000"):
        check_min_size(synthetic_ds, 64, 64)


def test_cache_dir_unwritable_only_warns(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="unet_ablate"):
        data = load_dataset(DataSpec("membranes", n_images=3, size=32), cache_dir=str(blocker / "sub"))
    assert "could not write the data cache" in caplog.text
    assert len(data.images) == 3
    assert os.listdir(tmp_path) == ["file"]


def test_loader_rejects_non_spec():
    with pytest.raises(DataError):
        loader.load_dataset({"name": "membranes"})


@pytest.mark.parametrize("value", [0, 255])
def test_masks_of_one_value_are_refused(tmp_path, value):
    """All-0 (or all-255) masks are not a binary task with one class: one line naming
    the folder and the value, before any run."""
    root = _make_pairs(tmp_path, n=4)
    for i in range(4):
        _save(root / "masks" / f"img{i:02d}.png", np.full((20, 24), value, np.uint8))
    message = _error(_folder_spec(root))
    assert "masks" in message and f"only the value {value}" in message and "two classes" in message


@pytest.mark.parametrize("which", ["images", "masks"])
def test_multi_page_files_are_refused_not_cut_to_their_first_frame(tmp_path, which):
    root = _make_pairs(tmp_path, n=4, image_ext=".tif")
    if which == "masks":
        for p in (root / "masks").iterdir():
            p.unlink()
        for i in range(4):
            _save(root / "masks" / f"img{i:02d}.tif", _binary_mask(seed=i))
    path = root / which / "img01.tif"
    array = _gray() if which == "images" else _binary_mask()
    frames = [Image.fromarray(array), Image.fromarray(array[::-1].copy()), Image.fromarray(array)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    before = _files(tmp_path)
    message = _error(_folder_spec(root))
    assert "img01.tif" in message and "3 frames" in message
    assert _files(tmp_path) == before


# ----------------------------------------------------------------------------- stack layout (multi-page TIFF)


def _write_stack(path: Path, array: np.ndarray, **kw) -> Path:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    kw.setdefault("photometric", "minisblack")  # else tifffile stores a (3, H, W) stack as one RGB page
    tifffile.imwrite(path, array, **kw)
    return path


def _make_stack(root: Path, n=5, image="train-volume.tif", labels="train-labels.tif", h=20, w=24) -> Path:
    _write_stack(root / image, np.stack([_gray(h, w, seed=i) for i in range(n)]))
    _write_stack(root / labels, np.stack([_binary_mask(h, w, seed=i) for i in range(n)]))
    return root


@pytest.mark.parametrize("layout", ["stack", "auto"])
def test_stack_layout_isbi_pair(tmp_path, layout):
    root = _make_stack(tmp_path)
    _write_stack(root / "test-volume.tif", np.stack([_gray(seed=9)] * 3))  # no labels: ignored
    data = load_dataset(_folder_spec(root, layout=layout))
    _check_dataset(data)
    assert data.layout == "stack" and data.in_channels == 1
    assert data.ids == [f"train-volume:{k}" for k in range(5)]
    assert data.num_classes == 2 and data.class_values == [0, 255]
    assert np.array_equal(data.masks[3], (_binary_mask(seed=3) == 255).astype(np.int64))
    assert np.allclose(data.images[2][0], _gray(seed=2) / 255.0, atol=1e-7)
    assert data.paths[0].endswith("train-volume.tif")


def test_stack_kfold_tests_every_frame_once(tmp_path):
    root = _make_stack(tmp_path)
    data = load_dataset(DataSpec(name="folder", root=str(root), layout="stack", split="kfold", folds=5))
    tested = sorted(data.ids[i] for view in data.fold_views() for i in view.splits["test"])
    assert tested == [f"train-volume:{k}" for k in range(5)]


def test_stack_images_masks_naming_rgb_and_loader(tmp_path):
    rgb = np.stack([np.stack([_gray(seed=i), _gray(seed=i + 1), _gray(seed=i + 2)], -1) for i in range(4)])
    _write_stack(tmp_path / "images.tif", rgb, photometric="rgb")
    _write_stack(tmp_path / "masks.tif", np.stack([_binary_mask(seed=i, high=1) for i in range(4)]))
    data = load_dataset(DataSpec(name="folder", root=str(tmp_path), layout="auto"))
    _check_dataset(data)
    assert data.layout == "stack" and data.in_channels == 3 and data.class_values == [0, 1]
    assert data.ids == [f"images:{k}" for k in range(4)]
    assert np.allclose(data.images[1][2], _gray(seed=3) / 255.0, atol=1e-7)


def test_stack_other_layouts_win_and_several_pairs(tmp_path):
    root = _make_pairs(tmp_path / "both", n=4)
    _make_stack(root)
    assert load_dataset(_folder_spec(root)).layout == "pairs"
    root = _make_stack(tmp_path / "two", n=2)
    _make_stack(root, n=2, image="b-volume.tif", labels="b-label.tif")
    data = load_dataset(_folder_spec(root))
    assert data.ids == ["b-volume:0", "b-volume:1", "train-volume:0", "train-volume:1"]


def test_stack_single_page_and_fingerprint(tmp_path):
    for stem in "abc":
        _write_stack(tmp_path / f"{stem}-volume.tif", _gray())
        _write_stack(tmp_path / f"{stem}-labels.tif", _binary_mask())
    data = load_dataset(_folder_spec(tmp_path, layout="stack"))
    assert data.ids == ["a-volume:0", "b-volume:0", "c-volume:0"]
    root = _make_stack(tmp_path / "fp")
    first = load_dataset(_folder_spec(root))
    assert load_dataset(_folder_spec(root)) is first
    _make_stack(root, n=6)
    assert len(load_dataset(_folder_spec(root)).images) == 6


@pytest.mark.parametrize("labels", [(4, 20, 24), (5, 20, 23)])
def test_stack_mismatch_names_both_files(tmp_path, labels):
    n, h, w = labels
    _write_stack(tmp_path / "train-volume.tif", np.stack([_gray(seed=i) for i in range(5)]))
    _write_stack(tmp_path / "train-labels.tif", np.stack([_binary_mask(h, w, seed=i) for i in range(n)]))
    message = _error(_folder_spec(tmp_path))
    assert "train-volume.tif" in message and "train-labels.tif" in message
    assert ("5 frame(s)" in message and "has 4" in message) if n == 4 else ("20x24" in message and "20x23" in message)


def test_stack_is_read_once_not_once_per_frame(tmp_path, monkeypatch):
    import tifffile

    opened = []
    real = tifffile.TiffFile
    def counting(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tifffile, "TiffFile", counting)
    load_dataset(_folder_spec(_make_stack(tmp_path)))
    assert sorted(opened) == ["train-labels.tif"] * 2 + ["train-volume.tif"] * 2  # frame count, then the pixels


def test_stack_unreadable_file(tmp_path):
    root = _make_stack(tmp_path)
    (root / "train-labels.tif").write_bytes(b"II*\x00 garbage")
    message = _error(_folder_spec(root, layout="stack"))
    assert "train-labels.tif" in message


def test_stack_16_bit_is_divided_by_65535(tmp_path):
    stack = np.random.default_rng(0).integers(0, 65536, (5, 20, 24), dtype=np.uint16)
    _write_stack(tmp_path / "train-volume.tif", stack)
    _write_stack(tmp_path / "train-labels.tif", np.stack([_binary_mask(seed=i) for i in range(5)]))
    data = load_dataset(_folder_spec(tmp_path))
    for k in range(5):
        assert np.array_equal(data.images[k][0], stack[k].astype(np.float32) / 65535.0)


def test_stack_float_min_max_over_the_whole_stack(tmp_path):
    stack = np.full((5, 20, 24), 1.0, np.float32)  # the middle of [-1, 3]
    stack[0, 0, 0], stack[4, 1, 1] = -1.0, 3.0
    _write_stack(tmp_path / "train-volume.tif", stack)
    _write_stack(tmp_path / "train-labels.tif", np.stack([_binary_mask(seed=i) for i in range(5)]))
    images = np.stack(load_dataset(_folder_spec(tmp_path)).images)
    assert images.min() == 0.0 and images.max() == 1.0
    assert images[0, 0, 0, 0] == 0.0 and images[4, 0, 1, 1] == 1.0 and images[2, 0, 5, 5] == 0.5


def test_stack_nan_is_one_line(tmp_path):
    stack = np.zeros((5, 20, 24), np.float32)
    stack[3, 2, 2] = np.nan
    _write_stack(tmp_path / "train-volume.tif", stack)
    _write_stack(tmp_path / "train-labels.tif", np.stack([_binary_mask(seed=i) for i in range(5)]))
    message = _error(_folder_spec(tmp_path))
    assert "train-volume.tif" in message and "NaN" in message


def test_single_file_float_and_int32_images_are_min_max_scaled(tmp_path):
    root = _make_pairs(tmp_path, n=4)
    for p in (root / "images").iterdir():
        p.unlink()
    for i in range(4):
        _write_stack(root / "images" / f"img{i:02d}.tif", (_gray(seed=i).astype(np.float32) - 100) / 50)
    data = load_dataset(_folder_spec(root))
    expected = (_gray(seed=1) - _gray(seed=1).min()) / float(_gray(seed=1).max() - _gray(seed=1).min())
    assert np.allclose(data.images[1][0], expected, atol=1e-6)
    _write_stack(root / "images" / "img02.tif", np.full((20, 24), 7, np.int32))  # constant: zeros
    assert not load_dataset(_folder_spec(root)).images[2].any()
    _write_stack(root / "images" / "img03.tif", np.full((20, 24), np.inf, np.float32))
    assert "img03.tif" in _error(_folder_spec(root))


def test_faint_membranes_are_thinner_and_fainter_than_membranes():
    """The harder built-in set: the same kind of cells, half the membrane, half the contrast."""
    stats = {}
    for name in ("membranes", "faint-membranes"):
        images, masks = synthetic.generate(name, 12, 96, 0)
        x = images[:, 0].astype(float)
        stats[name] = (1 - masks.mean(), x[masks == 1].mean() - x[masks == 0].mean())
        again, _ = synthetic.generate(name, 12, 96, 0)
        assert np.array_equal(images, again)
    (frac, contrast), (faint_frac, faint_contrast) = stats["membranes"], stats["faint-membranes"]
    assert 0.05 < faint_frac < 0.7 * frac and faint_contrast < 0.7 * contrast
    data = load_dataset(DataSpec("faint-membranes", n_images=6, size=32))
    assert data.num_classes == 2 and data.in_channels == 1


@pytest.mark.parametrize("which", ["train-volume.tif", "train-labels.tif"])
def test_stack_frames_of_another_size_are_one_error_naming_the_frame(tmp_path, which):
    """Not cropped to frame 0's size (a 40x32 frame against 32x32 labels was accepted)."""
    import tifffile

    _make_stack(tmp_path, n=3, h=32, w=32)
    frames = [_gray(32, 32, seed=0), _gray(40, 32, seed=1), _gray(32, 32, seed=2)]
    if which == "train-labels.tif":
        frames = [_binary_mask(32, 32, seed=0), _binary_mask(40, 32, seed=1), _binary_mask(32, 32, seed=2)]
    with tifffile.TiffWriter(tmp_path / which) as tif:
        for frame in frames:
            tif.write(frame, photometric="minisblack")
    message = _error(_folder_spec(tmp_path, layout="stack"))
    assert which in message and "frame 1 has shape (40, 32)" in message and "frame 0 has (32, 32)" in message


def test_a_stack_written_with_imwrite_defaults_is_explained(tmp_path):
    """tifffile.imwrite stores a (3, H, W) uint8 stack as one planar RGB page."""
    import tifffile

    _write_stack(tmp_path / "train-volume.tif", np.stack([_gray(seed=i) for i in range(3)]))
    tifffile.imwrite(tmp_path / "train-labels.tif", np.stack([_binary_mask(seed=i) for i in range(3)]))
    message = _error(_folder_spec(tmp_path, layout="stack"))
    assert "photometric='minisblack'" in message and "train-labels.tif" in message
