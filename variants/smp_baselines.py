"""segmentation-models-pytorch baselines, wrapped to accept any input size."""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .spec import SMP_ALIASES, SmpSpec


class PadToMultiple(nn.Module):
    """Zero-pads the input up to a multiple of ``multiple`` and crops the logits back, so
    that an smp model (which needs sizes divisible by its encoder's output stride, e.g.
    32) takes any size like the family."""

    def __init__(self, model: nn.Module, multiple: int, minimum: int = 0):
        super().__init__()
        self.model = model
        self.multiple, self.minimum = multiple, minimum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (max(n, self.minimum) + (-max(n, self.minimum) % self.multiple) - n for n in (h, w))
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        y = self.model(x)
        return y[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]


def architectures() -> dict[str, type]:
    """The architectures of the installed smp, by the names specs use (``SMP_ALIASES``)."""
    import segmentation_models_pytorch as smp

    return {SMP_ALIASES.get(k, k): cls for k, cls in smp.MODEL_ARCHITECTURES_MAPPING.items()}


def build_smp(spec: SmpSpec) -> PadToMultiple:
    """The smp model of ``spec`` (random init), padded to the multiple its encoder needs."""
    import segmentation_models_pytorch as smp

    classes = architectures()
    if spec.arch not in classes:
        raise ValueError(f"arch: {spec.arch!r} is not an architecture of the installed smp ({smp.__version__}: "
                         f"{', '.join(classes)})")
    if spec.encoder not in smp.encoders.get_encoder_names() and not spec.encoder.startswith("tu-"):
        raise ValueError(f"encoder: {spec.encoder!r} is not an smp encoder "
                         f"(see segmentation_models_pytorch.encoders.get_encoder_names(), or tu-<timm name>)")
    kwargs = spec.decoder_kwargs()
    if spec.arch == "dpt":
        kwargs["dynamic_img_size"] = True  # a ViT takes any size divisible by its patch, not only 224
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. DPT's readout advice for ViTs without a cls token
            model = classes[spec.arch](encoder_name=spec.encoder, encoder_weights=None, in_channels=spec.in_channels,
                                       classes=spec.classes, **kwargs)
    except (KeyError, ValueError, AssertionError, TypeError, RuntimeError) as e:
        raise ValueError(f"smp {spec.arch} with encoder {spec.encoder!r}: {str(e).splitlines()[0]}") from None
    multiple, minimum = INPUT_NEEDS.get(spec.arch, (None, 0))
    return PadToMultiple(model, multiple or input_multiple(model), minimum)


# Architectures whose decoders need more than their encoder's output stride (found by trying
# sizes): (multiple, smallest side). DPT reassembles its ViT tokens at 1/32; PAN's feature
# pyramid attention pools its 1/16 features three times more.
INPUT_NEEDS = {"dpt": (32, 0), "pan": (32, 128)}


def input_multiple(model: nn.Module) -> int:
    """The multiple an smp model needs its input sizes to be: its encoder's output stride
    (the encoder reduces by it), or 32 where the encoder does not say."""
    return int(getattr(getattr(model, "encoder", None), "output_stride", 32) or 32)
