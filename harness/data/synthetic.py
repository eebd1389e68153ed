"""Built-in synthetic data: deterministic, fast, and not trivially separable.

Both generators return uint8 arrays (images (N, C, S, S), masks (N, S, S)); the
loader turns them into float32 in [0, 1] and int64 masks.  Image i is drawn from its
own generator `default_rng([seed, stream, i])`, so it depends only on (seed, i, size):
the first 100 images of a 1000-image set are the 100 images of a 100-image set.

membranes  ISBI-like electron-microscopy look, grayscale (1 channel), binary mask
           in the ISBI convention (seed 001 reads label/255): 1 = cell interior,
           0 = membrane, so a model trained here reads real ISBI labels the same
           way.  A jittered, rotated grid of seeds gives a Voronoi tessellation
           (about 16-64 cells per 128x128 image); pixels whose second-nearest seed
           is less than w (1-3.5 px, wider for bigger cells) farther than the
           nearest form the membranes.  Cell interiors get their own brightness, smooth
           texture and small dark "organelles" as dark as the membranes (so that a
           threshold does not solve the task); membrane contrast fades in places;
           then Gaussian blur and additive noise.  Membranes cover ~15-30% of pixels.
faint-membranes  the same cells with membranes half as thin (0.6-1.6 px, ~9-14% of
           pixels), closer in brightness to the cells (level 0.3-0.4), fading further
           (contrast down to 0.2) and noisier (sigma 0.05-0.08): the thin-structure
           case where topology breaks first.  Its own random stream.
shapes     RGB (3 channels), 4 classes: 0 = background, 1 = disc, 2 = rectangle
           (rotated), 3 = triangle.  0-6 shapes of random colour (colour says nothing
           about the class), drawn in order so later shapes cover earlier ones, on a
           textured, shaded background, with per-channel colour noise and a slight
           blur.  About 15% of images have no foreground at all (mask all 0).

Speed: scipy's cKDTree finds the two nearest seeds on a half-resolution grid, and
the exact distances to those two are computed per pixel (exact except within a
pixel or so of the points where three cells meet, which are membrane anyway);
smooth fields are low-resolution noise zoomed up.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ndi = cKDTree = None  # scipy's, imported by _import_scipy when images are drawn

STREAMS = {"membranes": 1, "shapes": 2, "faint-membranes": 3}
EMPTY_FRACTION = 0.15  # shapes: probability that an image has no foreground
CLASS_VALUES = {"membranes": [0, 1], "shapes": [0, 1, 2, 3], "faint-membranes": [0, 1]}
IN_CHANNELS = {"membranes": 1, "shapes": 3, "faint-membranes": 1}


def generate(name: str, n_images: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, C, S, S), masks uint8 (N, S, S)) for a built-in data set.

    Images are drawn on a few threads (numpy and scipy release the GIL); each image has
    its own generator and its own output slot, so the result does not depend on them.
    """
    _import_scipy()  # here, before the threads, and not when a cached data set is read
    draw = {"membranes": _membrane, "shapes": _shapes,
            "faint-membranes": functools.partial(_membrane, faint=True)}[name]
    images = np.empty((n_images, IN_CHANNELS[name], size, size), np.uint8)
    masks = np.empty((n_images, size, size), np.uint8)

    def one(i: int) -> None:
        image, mask = draw(np.random.default_rng([seed, STREAMS[name], i]), size)
        images[i] = np.clip(np.rint(image * 255.0), 0, 255)
        masks[i] = mask

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(n_images)))
    return images, masks


def _import_scipy() -> None:
    global ndi, cKDTree
    from scipy import ndimage as ndi
    from scipy.spatial import cKDTree


def _smooth_field(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    """Smooth noise of unit-ish amplitude, varying over about `cell` pixels."""
    n = size // cell + 2
    coarse = rng.standard_normal((n, n)).astype(np.float32)
    field = ndi.zoom(coarse, size / (n - 1), order=1, mode="nearest", grid_mode=False)
    return field[:size, :size]


@functools.lru_cache(maxsize=4)
def _pixel_centres(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    return np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32)


def _membrane(rng: np.random.Generator, size: int, faint: bool = False) -> tuple[np.ndarray, np.ndarray]:
    # Seeds: a grid of g x g cells over the image (plus a margin), rotated and jittered.
    g = int(rng.integers(4, 9)) * size / 128
    spacing = size / g
    half = math.ceil(0.75 * g) + 1
    u = (np.arange(-half, half + 1) + 0.5) * spacing
    gx, gy = np.meshgrid(u, u)
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    pts += rng.uniform(-0.42, 0.42, pts.shape) * spacing
    angle = rng.uniform(0, math.pi / 2)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    pts = pts @ rot.T + size / 2
    keep = np.all((pts > -spacing) & (pts < size + spacing), axis=1)
    pts = pts[keep]

    # The two nearest seeds, found at half resolution; their exact distances at full
    # resolution.  gap = d(second) - d(nearest) is 0 on a cell border and grows inwards.
    half_size = (size + 1) // 2
    _, idx = cKDTree(pts).query(_pixel_centres(half_size) * 2.0, k=2)
    pair = idx.reshape(half_size, half_size, 2).repeat(2, 0).repeat(2, 1)[:size, :size]
    offset = _pixel_centres(size).reshape(size, size, 1, 2) - pts.astype(np.float32)[pair]
    d = np.sqrt(offset[..., 0] ** 2 + offset[..., 1] ** 2)
    gap = np.abs(d[..., 1] - d[..., 0])
    label = np.where(d[..., 0] <= d[..., 1], pair[..., 0], pair[..., 1])

    # Width: aims at a membrane fraction of 18-28% (fraction ~ 2 * width / spacing).
    # (faint: half as wide, 0.6-1.6 px, about 9-14% membrane)
    lo, hi = (0.09, 0.14) if faint else (0.18, 0.28)
    width = float(np.clip(rng.uniform(lo, hi) * spacing / 2, *((0.6, 1.6) if faint else (1.0, 3.5))))
    membrane = gap < width
    edge = np.clip(1.5 - gap / width, 0.0, 1.0)  # soft membrane profile, 1 on the membrane core

    # Cell interiors: per-cell brightness, smooth texture, dark organelles.
    brightness = rng.uniform(0.5, 0.85, len(pts)).astype(np.float32)
    image = brightness[label] + 0.06 * _smooth_field(rng, size, 6)
    n_blobs = rng.poisson(1.0 * len(pts))
    impulses = np.zeros((size, size), np.float32)
    ys, xs = rng.integers(0, size, (2, n_blobs))
    np.add.at(impulses, (ys, xs), rng.uniform(0.25, 0.55, n_blobs).astype(np.float32))
    sigma = rng.uniform(0.9, 1.8)
    blobs = ndi.gaussian_filter(impulses, sigma) * (2 * math.pi * sigma**2)
    image -= np.minimum(blobs, 0.6)

    # Membranes: dark, with contrast that fades in places.
    level = rng.uniform(0.3, 0.4) if faint else rng.uniform(0.08, 0.25)
    contrast = np.clip(0.8 + 0.35 * _smooth_field(rng, size, 24), 0.2 if faint else 0.35, 1.0)
    image += (level - image) * edge * contrast

    image = ndi.gaussian_filter(image, rng.uniform(0.5, 0.9))
    noise = rng.uniform(0.05, 0.08) if faint else rng.uniform(0.02, 0.05)
    image += noise * rng.standard_normal(image.shape, np.float32)
    return image[None], (~membrane).astype(np.uint8)


def _shapes(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

    # Background: a base colour, a linear shading ramp, smooth colour texture.
    base = rng.uniform(0.2, 0.8, 3).astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = ((xx - size / 2) * math.cos(theta) + (yy - size / 2) * math.sin(theta)) / size
    image = base[:, None, None] + rng.uniform(0.1, 0.3) * ramp[None]
    image += 0.07 * np.stack([_smooth_field(rng, size, 8) for _ in range(3)])
    mask = np.zeros((size, size), np.uint8)

    n_shapes = 0 if rng.random() < EMPTY_FRACTION else int(rng.integers(1, 7))
    for _ in range(n_shapes):
        cls = int(rng.integers(1, 4))
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        r = rng.uniform(0.07, 0.2) * size
        phi = rng.uniform(0, 2 * math.pi)
        dx, dy = xx - cx, yy - cy
        if cls == 1:  # disc
            inside = dx * dx + dy * dy <= r * r
        elif cls == 2:  # rotated rectangle
            u = dx * math.cos(phi) + dy * math.sin(phi)
            v = -dx * math.sin(phi) + dy * math.cos(phi)
            inside = (np.abs(u) <= r * rng.uniform(0.6, 1.1)) & (np.abs(v) <= r * rng.uniform(0.35, 0.9))
        else:  # triangle: inside all three edges of a jittered, rotated triangle
            a = phi + np.array([0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.3, 0.3, 3)
            px, py = cx + 1.2 * r * np.cos(a), cy + 1.2 * r * np.sin(a)
            inside = np.ones((size, size), bool)
            for k in range(3):
                x0, y0, x1, y1 = px[k], py[k], px[(k + 1) % 3], py[(k + 1) % 3]
                inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
        # A colour well away from the background base colour, with a little shading.
        direction = rng.normal(size=3)
        colour = np.clip(base + direction / np.linalg.norm(direction) * rng.uniform(0.3, 0.6), 0, 1)
        shade = 1.0 + 0.15 * (dx * math.cos(phi) + dy * math.sin(phi)) / max(r, 1.0)
        image[:, inside] = colour[:, None].astype(np.float32) * shade[inside]
        mask[inside] = cls

    image = ndi.gaussian_filter(image, (0, 0.6, 0.6))
    image += rng.uniform(0.02, 0.05) * rng.standard_normal(image.shape, np.float32)
    return image, mask
