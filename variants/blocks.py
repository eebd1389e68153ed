"""Small named parts that read like the U-Net figure; activations, norms and upsampling
operators chosen by name from one registry each (the spec's axes take their values from
these keys)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6}
NORMS = {"bn": nn.BatchNorm2d, "nobn": None}
UPSAMPLING = {
    # a 2x2 stride-2 transposed conv cin -> cout
    "transpose": lambda cin, cout: nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2),
    # parameter-free (align_corners=True as in seeds 001-003); keeps cin channels
    "bilinear": lambda cin, cout: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
}


def conv_stack(channels: list[int], act: str, norm: str, padding: int) -> nn.Sequential:
    """``len(channels) - 1`` times (3x3 conv -> [norm] -> act); the seeds' DoubleConv is
    ``conv_stack([cin, cout, cout], ...)``. Convs keep their bias, as in every seed."""
    layers: list[nn.Module] = []
    norm_layer = NORMS[norm]
    for cin, cout in zip(channels[:-1], channels[1:]):
        layers.append(nn.Conv2d(cin, cout, kernel_size=3, padding=padding))
        if norm_layer is not None:
            layers.append(norm_layer(cout))
        layers.append(ACTIVATIONS[act](inplace=True))
    return nn.Sequential(*layers)


def up_layer(kind: str, cin: int, cout: int) -> nn.Module:
    """2x upsampling by the named operator (see ``UPSAMPLING``)."""
    return UPSAMPLING[kind](cin, cout)


def center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top = (x.shape[-2] - h) // 2
    left = (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


def fuse(skips: list[torch.Tensor], up: torch.Tensor, skip_mode: str) -> torch.Tensor:
    """Concatenate skip maps with the upsampled map (skips first, as seeds 001-003).

    ``pad``: the upsampled map is zero-padded to the skip size (seed 001's ``Up``).
    ``crop``: each skip map is center-cropped to the upsampled size (the original paper).
    """
    h, w = skips[0].shape[-2:]
    if skip_mode == "pad":
        dy, dx = h - up.shape[-2], w - up.shape[-1]
        if dy or dx:
            up = F.pad(up, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
    else:
        h, w = up.shape[-2:]
        skips = [center_crop(s, h, w) for s in skips]
    return torch.cat([*skips, up], dim=1)
