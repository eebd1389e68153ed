"""Reading one image, mask or TIFF stack file, as every folder layout does.

Images become float32 (C, H, W) in [0, 1] by one scaling rule (`scale_image`):
  * uint8 -> /255, uint16 -> /65535, bool -> 0/1;
  * floats already within [0, 1] are kept;
  * any other integer type, and floats with values outside [0, 1]: linear min-max
    scaling to [0, 1] over the whole array read (a whole stack for the stack layout,
    the file otherwise); a constant array becomes zeros;
  * NaN or infinite values are an error.  Nothing is ever clipped.
RGBA, CMYK and coloured palette images become RGB, 1-bit and gray palette images
grayscale (an alpha channel is dropped before scaling).  All images of a data set must
have the same channel count.

Masks are read as integers: palette PNGs give their palette indices, an RGB(A) mask
whose channels are equal gives one channel (a truly coloured one is an error).

Every problem is a one-line DataError naming the file at fault.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from .spec import DataError


def _open(path: Path, what: str) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
        raise DataError(f"cannot read {what} file {path}: {type(exc).__name__}: {exc}") from None
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise DataError(f"{what} file {path} holds {frames} frames (a multi-page file); expected one "
                        f"image per file: split the stack into one file per frame, or use the 'stack' "
                        f"layout (X-volume.tif + X-labels.tif)")
    return image


def _is_gray_palette(image: Image.Image) -> bool:
    palette = np.asarray(image.getpalette() or [], np.uint8)
    rgb = palette[: len(palette) // 3 * 3].reshape(-1, 3)
    return bool(np.all(rgb == rgb[:, :1]))


def scale_image(array: np.ndarray, path: Path) -> np.ndarray:
    """`array` (a file or a whole stack) as float32 in [0, 1] by the scaling rule of the
    module docstring: uint8 /255, uint16 /65535, bool 0/1, floats in [0, 1] kept, else min-max."""
    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind == "b":
        return array.astype(np.float32)
    if kind == "u" and size <= 2:
        return array.astype(np.float32) / (255.0 if size == 1 else 65535.0)
    if kind == "f":
        if not np.isfinite(array).all():
            raise DataError(f"image {path} holds NaN or infinite values; expected finite intensities")
        if array.min() >= 0 and array.max() <= 1:
            return array.astype(np.float32)
    elif kind not in "iu":
        raise DataError(f"image {path} holds values of type {array.dtype}; expected integer, float or bool")
    low, high = float(array.min()), float(array.max())
    if low == high:
        return np.zeros(array.shape, np.float32)
    return ((array.astype(np.float64) - low) / (high - low)).astype(np.float32)


def read_image(path: Path) -> np.ndarray:
    """One image file as float32 (C, H, W) in [0, 1]."""
    image = _open(path, "image")
    mode = image.mode
    if mode == "1" or mode == "LA" or (mode in ("P", "PA") and _is_gray_palette(image)):
        image = image.convert("L")
    elif mode not in ("L", "RGB", "F") and not mode.startswith("I"):
        try:
            image = image.convert("RGB")
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad conversion
            raise DataError(f"cannot convert image file {path} (mode {mode}) to RGB: {exc}") from None
    array = scale_image(np.asarray(image), path)
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def _mask_values(array: np.ndarray, path: Path, mode: str) -> np.ndarray:
    """Raw integer mask values of `array` (..., channels): the first channel of a gray(+alpha)
    or palette(+alpha) mask, or R of a mask with R == G == B."""
    if array.shape[-1] <= 2:
        array = array[..., 0]
    else:
        rgb = array[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise DataError(f"mask {path} is coloured ({mode}); expected a grayscale, palette "
                            "or index mask (or R == G == B)")
        array = rgb[..., 0]
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise DataError(f"mask {path} holds non-integer values; expected class values")
        array = array.astype(np.int64)
    if array.dtype.kind == "b":
        array = array.astype(np.uint8)
    if array.min() < 0:
        raise DataError(f"mask {path} holds negative values; expected class values >= 0")
    return array


def read_mask(path: Path) -> np.ndarray:
    """One mask file as a 2-D array of raw integer values."""
    image = _open(path, "mask")
    array = np.asarray(image)
    return _mask_values(array[..., None] if array.ndim == 2 else array, path, image.mode)


def _read_stack(path: Path, what: str) -> np.ndarray:
    """A TIFF stack read at once with tifffile, as (frames, H, W, channels); one page is 1
    frame. Every frame must have frame 0's shape: a DataError names the first that has not
    (a stack is one volume; images of different sizes belong in a folder of files)."""
    try:
        with tifffile.TiffFile(path) as tif:
            page, n = tif.pages[0], len(tif.pages)
            other = next(((i, p.shape) for i, p in enumerate(tif.pages) if p.shape != page.shape), None)
            array = None if other else tif.asarray(key=range(n)).reshape(n, *page.shape)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for a bad file
        raise DataError(f"cannot read the TIFF stack {path}: {type(exc).__name__}: {exc}") from None
    if other:
        raise DataError(f"{what} stack {path}: frame {other[0]} has shape {other[1]}, frame 0 has "
                        f"{page.shape}; expected frames of one size (images of different sizes: "
                        f"a folder of image files)")
    if page.axes == "YX":
        return array[..., None]
    if page.axes == "SYX":  # planar RGB
        return np.moveaxis(array, 1, -1)
    if page.axes != "YXS":
        raise DataError(f"{what} stack {path} has pages of shape {page.shape} (axes {page.axes}); "
                        "expected gray (HxW) or RGB(A) (HxWx3, HxWx4) pages")
    return array


def planar_hint(path: Path) -> str:
    """" (... photometric='minisblack')" when ``path`` is one planar RGB(A) page, as
    ``tifffile.imwrite`` stores a stack of 3 or 4 frames by default; "" otherwise."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            planar = len(tif.pages) == 1 and page.axes == "SYX" and page.shape[0] in (3, 4)
    except Exception:  # noqa: BLE001 - only a hint: the caller's error stands either way
        return ""
    return (f" ({Path(path).name} is one planar RGB page, as tifffile.imwrite stores a stack of 3 or 4 "
            f"frames by default: write the stack with photometric='minisblack')") if planar else ""


def read_stack_pair(image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (frames, C, H, W), raw masks (frames, H, W)) of a stack pair, each read once."""
    images, labels = _read_stack(image_path, "image"), _read_stack(label_path, "label")
    if images.shape[:3] != labels.shape[:3]:
        (n, h, w), (m, lh, lw) = images.shape[:3], labels.shape[:3]
        hint = planar_hint(image_path) or planar_hint(label_path)
        raise DataError(f"image stack {image_path} holds {n} frame(s) of {h}x{w} (HxW) but its label stack "
                        f"{label_path} holds {m} of {lh}x{lw}; expected the same count and size{hint}")
    if images.shape[-1] > 4:
        raise DataError(f"image stack {image_path} has {images.shape[-1]} channels per frame; "
                        "expected gray (1) or RGB (3)")
    images = images[..., : 1 if images.shape[-1] <= 2 else 3]  # without an alpha channel
    images = np.ascontiguousarray(scale_image(images, image_path).transpose(0, 3, 1, 2))
    return images, _mask_values(labels, label_path, "an RGB stack")
