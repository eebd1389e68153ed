"""Spatial sizes of the family: what comes out for a given input, and back.

In ``pad`` mode every input size works and the output has the input's size. In ``crop``
mode (unpadded convs) each 3x3 conv removes a 1-pixel border, maps entering a 2x2
max-pool must have even size, and the output is smaller than the input; these helpers
let the harness mirror-pad an image (overlap-tile) so that every pixel is predicted.
All functions work on one dimension; apply them to height and width separately.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import ArchSpec


def min_pad_size(spec: ArchSpec) -> int:
    """The smallest height or width a pad-mode net takes: 2**depth (each level halves it)."""
    return 2 ** spec.depth


def stage_convs(spec: ArchSpec) -> list[int]:
    """3x3 convs in each encoder stage (stage 0 .. depth)."""
    if spec.encoder == "vgg16":
        return [2, 2, 3, 3, 3][: spec.depth + 1]
    return [2] * (spec.depth + 1)


def _trace(spec: ArchSpec, n: int) -> int | str:
    """Output size for input size ``n`` in crop mode, or the reason it is invalid."""
    enc = []
    s = n
    k = spec.form_column
    for i in range(k + 1):
        s -= 2 * stage_convs(spec)[i]
        if s < 1:
            return f"the feature map of encoder stage {i} would be empty"
        enc.append(s)
        if i < k:
            if s % 2:
                return f"encoder stage {i} gives odd size {s} before a 2x2 max-pool"
            s //= 2
    # decoder column j, row i: 2 * size(i+1, j-1) - 4; for the plain U-Net only the
    # diagonal i + j == k matters, for UNet++ it is the same recurrence on every node
    col = enc
    for j in range(1, k + 1):
        col = [2 * col[i + 1] - 4 for i in range(k + 1 - j)]
        if min(col) < 1:
            return f"decoder level {k - j} would be empty"
    return col[0]


def output_size(spec: ArchSpec, n: int) -> int:
    """Output size along one dimension for input size ``n``; raises ``ValueError`` for an
    input that is too small or, in crop mode, not valid (with the sizes that are)."""
    if n < 1:
        raise ValueError(f"input size must be positive, got {n}")
    if spec.skip == "pad":
        return n
    out = _trace(spec, n)
    if isinstance(out, int):
        return out
    smallest = min_input_size(spec, 1)
    if n < smallest:
        raise ValueError(f"input size {n} is too small for skip='crop' at this depth: "
                         f"the smallest valid input size is {smallest}")
    below, above = _valid_neighbours(spec, n)
    raise ValueError(f"input size {n} is not valid for skip='crop' ({out}); "
                     f"the nearest valid sizes are {below} and {above}")


def _valid_neighbours(spec: ArchSpec, n: int) -> tuple[int, int]:
    below = n - 1
    while not isinstance(_trace(spec, below), int):
        below -= 1
    return below, min_input_size(spec, output_size(spec, below) + 1)


def min_input_size(spec: ArchSpec, out: int) -> int:
    """The smallest valid input size whose output is at least ``out`` pixels."""
    if spec.skip == "pad":
        return max(out, 1)
    n = max(out, 1)
    while True:
        o = _trace(spec, n)
        if isinstance(o, int) and o >= out:
            return n
        n += 1


def margin(spec: ArchSpec) -> int:
    """Pixels lost on each side: input = output + 2 * margin at every valid size."""
    n = min_input_size(spec, 1)
    return (n - output_size(spec, n)) // 2


def input_geometry(spec, out: int) -> tuple[int, int]:
    """(input size, margin) that predicts ``out`` pixels along one dimension: the smallest
    valid input whose output covers them, and the pixels it loses on each side. Pad-mode
    nets and smp baselines (no ``skip``) take ``out`` itself, with no margin."""
    if getattr(spec, "skip", "pad") != "crop":
        return out, 0
    return min_input_size(spec, out), margin(spec)
