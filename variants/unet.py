"""The configurable U-Net and UNet++ (nested dense skips, deep supervision)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .blocks import center_crop, conv_stack, fuse, up_layer
from .sizes import min_pad_size, output_size, stage_convs

if TYPE_CHECKING:  # spec.py takes its topology names from TOPOLOGIES below
    from .spec import ArchSpec


def encoder_channels(spec: ArchSpec) -> list[int]:
    """Channels of encoder stages 0..depth (the last is the bottleneck)."""
    if spec.encoder == "vgg16":  # torchvision layout: 64, 128, 256, 512, 512 at width 64
        return [min(spec.width * 2**i, spec.width * 8) for i in range(spec.depth + 1)]
    ch = [spec.width * 2**i for i in range(spec.depth + 1)]
    if spec.channels == "matched":  # seed 001: down4 = Down(512, 512)
        ch[-1] = ch[-2]
    return ch


class Encoder(nn.Module):
    """Stage 0 is a conv stack; stages 1..depth are max-pool then a conv stack."""

    def __init__(self, spec: ArchSpec, depth: int | None = None):
        super().__init__()
        depth = spec.depth if depth is None else depth
        ch = encoder_channels(spec)
        pad = 1 if spec.skip == "pad" else 0
        cin = spec.in_channels
        self.stages = nn.ModuleList()
        for i, n in enumerate(stage_convs(spec)[: depth + 1]):
            self.stages.append(conv_stack([cin] + [ch[i]] * n, spec.act, spec.norm, pad))
            cin = ch[i]
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats


class _Base(nn.Module):
    encoder: Encoder  # set by each topology

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.spec.in_channels:
            raise ValueError(f"expected input of shape (N, {self.spec.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        if self.spec.skip == "crop":
            for n in x.shape[-2:]:
                output_size(self.spec, int(n))  # raises a ValueError naming valid sizes
        elif min(x.shape[-2:]) < (n := min_pad_size(self.spec)):
            raise ValueError(f"input {x.shape[-2]}x{x.shape[-1]} is smaller than {n}x{n}, the smallest "
                             f"a pad-mode net of depth {self.spec.depth} takes (2**depth)")


class UNet(_Base):
    """U-Net: encoder, a decoder block per level (up -> fuse with skip -> conv stack),
    a 1x1 conv head that returns logits."""

    def __init__(self, spec: ArchSpec):
        super().__init__(spec)
        ch = encoder_channels(spec)
        pad = 1 if spec.skip == "pad" else 0
        self.encoder = Encoder(spec)
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        below = ch[-1]
        for i in reversed(range(spec.depth)):
            if spec.channels == "matched":  # seed 001: up keeps channels, block halves
                up_out, out = below, ch[i - 1] if i > 0 else ch[0]
            else:  # classic: transposed conv halves, bilinear keeps
                up_out, out = (ch[i] if spec.up == "transpose" else below), ch[i]
            self.ups.append(up_layer(spec.up, below, up_out))
            self.blocks.append(conv_stack([ch[i] + up_out, out, out], spec.act, spec.norm, pad))
            below = out
        self.head = nn.Conv2d(below, spec.classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        feats = self.encoder(x)
        y = feats[-1]
        for up, block, skip in zip(self.ups, self.blocks, reversed(feats[:-1])):
            y = block(fuse([skip], up(y), self.spec.skip))
        return self.head(y)


class NestedUNet(_Base):
    """UNet++ (seed 003): node X(i, j) fuses X(i, 0..j-1) with the upsampled X(i+1, j-1).

    With deep supervision a 1x1 head sits on every X(0, j): training mode returns the list
    of head logits (all cropped to the last head's size in crop mode); inference returns
    their mean ("accurate" mode). A spec with ``form="Lk"`` builds the "fast" mode: only
    the nodes with i + j <= k and head k, so that its cost is measured pruned; parameter
    names equal the full network's, see :meth:`pruned`.
    """

    def __init__(self, spec: ArchSpec):
        super().__init__(spec)
        ch = encoder_channels(spec)
        pad = 1 if spec.skip == "pad" else 0
        k = spec.form_column
        self.columns = k
        self.encoder = Encoder(spec, depth=k)
        self.ups = nn.ModuleDict()
        self.nodes = nn.ModuleDict()
        for j in range(1, k + 1):
            for i in range(k + 1 - j):
                up_out = ch[i] if spec.up == "transpose" else ch[i + 1]
                self.ups[f"{i}_{j}"] = up_layer(spec.up, ch[i + 1], up_out)
                self.nodes[f"{i}_{j}"] = conv_stack([ch[i] * j + up_out, ch[i], ch[i]],
                                                    spec.act, spec.norm, pad)
        if spec.form != "mean":
            head_cols = [k]
        else:
            head_cols = list(range(1, k + 1)) if spec.deep_supervision else [k]
        self.heads = nn.ModuleDict({f"L{j}": nn.Conv2d(ch[0], spec.classes, 1) for j in head_cols})

    def forward(self, x: torch.Tensor):
        self.check_input(x)
        grid: list[list[torch.Tensor]] = [[f] for f in self.encoder(x)]
        for j in range(1, self.columns + 1):
            for i in range(self.columns + 1 - j):
                up = self.ups[f"{i}_{j}"](grid[i + 1][j - 1])
                grid[i].append(self.nodes[f"{i}_{j}"](fuse(grid[i], up, self.spec.skip)))
        logits = [head(grid[0][int(name[1:])]) for name, head in self.heads.items()]
        if len(logits) == 1:
            return logits[0]
        h, w = logits[-1].shape[-2:]
        logits = [center_crop(y, h, w) for y in logits]
        if self.training:
            return logits
        return torch.stack(logits).mean(0)

    def pruned(self, k: int) -> "NestedUNet":
        """The fast-mode network of form Lk, sharing this network's trained values."""
        net = NestedUNet(self.spec.replace(form=f"L{k}"))
        state = self.state_dict()
        net.load_state_dict({name: state[name] for name in net.state_dict()})
        net.train(self.training)
        return net.to(next(self.parameters()).device)


TOPOLOGIES = {"unet": UNet, "unetpp": NestedUNet}
"""The topology axis: name -> model class (each takes an ``ArchSpec``)."""
