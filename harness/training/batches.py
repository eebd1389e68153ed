"""Training batches: random patches (``PatchSampler``) and where they come from in the loop
(``Batches``): sampled in the loop on the CPU, or, for a CUDA run, by a thread that samples the
next batches into pinned memory while the GPU trains on the current one, so that sampling
(2-4 ms per batch of 16 at 192x192) is off the critical path. Both draw the same patches from
the same generator in the same order: the batches, and so the results, are the same."""
from __future__ import annotations

import queue
import threading

import numpy as np
import torch

import variants

from ..metrics import IGNORE

PREFETCH = 2  # batches sampled ahead of the one training


class PatchSampler:
    """Random training patches. Every model learns from ``patch`` x ``patch`` target
    pixels; a crop-mode model sees them with its margin of mirrored context around them
    (the paper's overlap-tile, mirrored as in evaluation), and where its smallest valid
    output is larger than the patch, the extra target pixels are marked ignore, so every
    variant learns from the same number of pixels.

    A batch is (images float32 (N, C, n, n), targets (N, out, out)); targets are uint8
    (class indices and IGNORE; int64 beyond 255 classes), a fraction of the bytes to
    gather and copy to the device, where training widens them."""

    def __init__(self, images, masks, spec, patch: int, augment: bool, rng: np.random.Generator):
        n, m = variants.input_geometry(spec, patch)
        self.n, self.m, self.out, self.patch = n, m, n - 2 * m, patch
        self.augment, self.rng = augment, rng
        self.images, self.masks = [], []
        small = all(int(mk.max(initial=0)) <= IGNORE for mk in masks)
        for im, mk in zip(images, masks):
            h, w = mk.shape
            ph, pw = max(0, self.out - h), max(0, self.out - w)  # too small: pad, ignore
            mk = np.pad(mk, ((0, ph), (0, pw)), constant_values=IGNORE).astype(np.uint8 if small else np.int64)
            # "reflect" (edge pixel not repeated) is what predict.mirror_pad does
            im = np.pad(im, ((0, 0), (m, m + ph), (m, m + pw)), mode="reflect")
            self.images.append(im)
            self.masks.append(mk)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for i in self.rng.integers(len(self.images), size=size):
            mk = self.masks[i]
            y0 = self.rng.integers(mk.shape[0] - self.out + 1)
            x0 = self.rng.integers(mk.shape[1] - self.out + 1)
            x = self.images[i][:, y0:y0 + self.n, x0:x0 + self.n]
            y = mk[y0:y0 + self.out, x0:x0 + self.out]
            if self.out > self.patch:
                y = y.copy()
                y[self.patch:, :] = IGNORE
                y[:, self.patch:] = IGNORE
            if self.augment:
                k = int(self.rng.integers(4))
                flip = bool(self.rng.integers(2))
                x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
                if flip:
                    x, y = x[:, :, ::-1], y[:, ::-1]
            xs.append(x)
            ys.append(y)
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))  # one copy of each view


class Batches:
    """The batches of a training run, on the run's device and in its memory format.

    ``prefetch`` (CUDA runs): a daemon thread samples up to ``PREFETCH`` batches ahead into
    pinned memory, each with the sampler's generator state after it; the loop copies one
    (non-blocking) when it needs it. ``state`` is the generator state after the last batch
    the loop took (what a checkpoint must hold, not the thread's state, which runs ahead);
    None without prefetching (the generator's own state is that). ``close`` stops the thread."""

    def __init__(self, sampler: PatchSampler, size: int, ex, prefetch: bool):
        self.sampler, self.size, self.ex = sampler, size, ex
        self.state: dict | None = None
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        if prefetch:
            self._queue = queue.Queue(PREFETCH)
            self._thread = threading.Thread(target=self._produce, daemon=True, name="batch prefetch")
            self._thread.start()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                x, y = self.sampler.batch(self.size)
                if self.ex.cuda:  # page-locked: the copy to the GPU runs without a staging copy
                    x, y = x.pin_memory(), y.pin_memory()
                item = (x, y, self.sampler.rng.bit_generator.state)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # noqa: BLE001 - handed to the loop, which raises it
            self._queue.put((e, None, None))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch: images in the run's memory format, targets as int64, on the device."""
        if self._queue is None:
            x, y = self.sampler.batch(self.size)
        else:
            x, y, self.state = self._queue.get()
            if isinstance(x, BaseException):
                raise x
        ahead = self._queue is not None and self.ex.cuda  # pinned: the copies need not block
        return self.ex.inputs(x, non_blocking=ahead), y.to(self.ex.device, non_blocking=ahead).long()

    def close(self) -> None:
        self._stop.set()
