"""Whole-image prediction: class maps of images of any size, in batches of one shape, under
the run's precision and memory format; crop-mode models predict by overlap-tile (the image
mirror-padded by their margin, ``variants.input_geometry``), so every variant's prediction
covers the same pixels."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from variants import input_geometry

from .execution import Execution


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect-pad a (N, C, H, W) tensor by any amount (repeated reflection, as
    the paper's overlap-tile strategy extrapolates the missing context)."""
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        t, b = min(top, h - 1), min(bottom, h - 1)
        l, r = min(left, w - 1), min(right, w - 1)
        if h == 1 or w == 1:  # reflection is undefined on a single row or column
            return F.pad(x, [left, right, top, bottom], mode="replicate")
        x = F.pad(x, [l, r, t, b], mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - l, right - r
    return x


@torch.no_grad()
def predict_logits(model, spec, image: torch.Tensor, tile: int = 1024) -> torch.Tensor:
    """Logits (N, K, H, W) for whole images (N, C, H, W) of any size.

    Pad-mode models see the image as it is. Crop-mode models see the image mirror-padded
    by their margin, in tiles of at most ``tile`` output pixels (overlap-tile), so their
    prediction covers the same pixels as every other variant's."""
    h, w = image.shape[-2:]
    if getattr(spec, "skip", "pad") != "crop":
        return model(image)
    rows = []
    for y0 in range(0, h, tile):
        cols = []
        th = min(tile, h - y0)
        nh, mh = input_geometry(spec, th)
        for x0 in range(0, w, tile):
            tw = min(tile, w - x0)
            nw, mw = input_geometry(spec, tw)
            # the tile's context: image rows y0 - mh .. y0 - mh + nh, mirrored at borders
            top, left = mh - y0, mw - x0
            bottom, right = y0 - mh + nh - h, x0 - mw + nw - w
            window = image[..., max(y0 - mh, 0):min(y0 - mh + nh, h), max(x0 - mw, 0):min(x0 - mw + nw, w)]
            window = mirror_pad(window, max(top, 0), max(bottom, 0), max(left, 0), max(right, 0))
            cols.append(model(window)[..., :th, :tw])
        rows.append(torch.cat(cols, dim=-1))
    return torch.cat(rows, dim=-2)


def to_classes(logits: torch.Tensor) -> torch.Tensor:
    """Binary (one logit): logit > 0; multi-class: argmax over the class logits."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def _batches(images: list[np.ndarray], batch: int):
    """Indices grouped by image shape, at most ``batch`` at a time, in order."""
    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(im.shape, []).append(i)
    for idx in groups.values():
        for s in range(0, len(idx), batch):
            yield idx[s:s + batch]


@torch.no_grad()
def predict_classes(model, spec, images: list[np.ndarray], ex: Execution, batch: int = 8) -> list[np.ndarray]:
    """Class maps (uint8) of whole images, as the run executes (``ex``: device, precision,
    memory format)."""
    model.eval()
    out: list[np.ndarray | None] = [None] * len(images)
    for idx in _batches(images, batch):
        x = ex.inputs(torch.from_numpy(np.stack([images[i] for i in idx])))
        with ex.amp():
            logits = predict_logits(model, spec, x)
        for i, p in zip(idx, to_classes(logits.float()).cpu().numpy()):
            out[i] = p.astype(np.uint8)
    return out  # type: ignore[return-value]
