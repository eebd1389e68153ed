"""segmentation-models-pytorch baselines, wrapped to accept any input size."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .spec import SmpSpec


class PadToMultiple(nn.Module):
    """Zero-pads the input up to a multiple of ``multiple`` and crops the logits back, so
    that an smp model (which needs sizes divisible by 32) takes any size like the family."""

    def __init__(self, model: nn.Module, multiple: int):
        super().__init__()
        self.model = model
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        y = self.model(x)
        return y[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]


def build_smp(spec: SmpSpec) -> nn.Module:
    import segmentation_models_pytorch as smp

    if spec.encoder not in smp.encoders.get_encoder_names() and not spec.encoder.startswith("tu-"):
        raise ValueError(f"encoder: {spec.encoder!r} is not an smp encoder "
                         f"(see segmentation_models_pytorch.encoders.get_encoder_names())")
    depth = len(spec.decoder_channels)
    cls = smp.Unet if spec.arch == "unet" else smp.UnetPlusPlus
    try:
        model = cls(encoder_name=spec.encoder, encoder_weights=None, encoder_depth=depth,
                    decoder_channels=spec.decoder_channels, in_channels=spec.in_channels,
                    classes=spec.classes)
    except (KeyError, ValueError, AssertionError) as e:
        raise ValueError(f"smp {spec.arch} with encoder {spec.encoder!r}: {e}") from None
    return PadToMultiple(model, 2**depth)
