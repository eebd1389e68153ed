"""Static cost of a network: parameters and multiply-accumulates (MACs).

Convention (stated in every table): MACs count convolutions (transposed included) and
matrix multiplies only, for one image, from ``torch.utils.flop_counter.FlopCounterMode``
(FLOPs = 2 x MACs) run on the ``meta`` device so that it costs no compute and no memory at
any image size. Norms, activations, pooling and interpolation are not counted. ``thop`` is
the cross-check, also on ``meta``; on PyPI it over-counts ``ConvTranspose2d`` by stride^2
and leaves buffers on the model, so it runs on a copy with a corrected counter (and also
counts norms and interpolation).

The cross-check is a test-time check (thop is in the ``test`` extra, not a dependency):
thop's last release (2022) imports ``distutils``, which Python 3.12 removed, so it cannot
be what any number of the harness rests on. The tests run it on Python 3.11, where CI
runs; ``profile`` shows it wherever thop imports, and says why not elsewhere.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

import variants


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_model(spec) -> nn.Module:
    spec = variants.parse(spec)
    if spec.weights:
        spec = spec.replace(weights=None)  # weights do not change the cost
    with torch.device("meta"):
        return variants.build(spec)


def _meta_forward(spec, height: int, width: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, int]:
    """(model, input, output, MACs) of one ``height x width`` image in inference (eval)
    mode, from a single forward pass on ``meta``. An input the model cannot take is a
    one-line ValueError."""
    from torch.utils.flop_counter import FlopCounterMode  # (imports triton: only when counting)

    spec = variants.parse(spec)
    model = _meta_model(spec).eval()
    x = torch.empty(1, spec.in_channels, height, width, device="meta")
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            y = model(x)
    except ValueError as e:  # the model's own input check names the sizes it takes
        raise ValueError(f"{spec.name}: {e}") from None
    except RuntimeError as e:  # a layer's
        raise ValueError(f"{spec.name} cannot take a {height}x{width} input: {str(e).splitlines()[0]}") from None
    return model, x, y, counter.get_total_flops() // 2


def count_macs(spec, height: int, width: int) -> int:
    """MACs for one ``height x width`` image in inference (eval) mode, on ``meta``."""
    return _meta_forward(spec, height, width)[3]


def _thop_convtranspose(m: nn.ConvTranspose2d, x, y) -> None:
    """Every input pixel meets Cout/groups x kH x kW weights per input channel."""
    x = x[0]
    k = m.weight.shape[2] * m.weight.shape[3]
    m.total_ops += torch.DoubleTensor([x.numel() * (m.out_channels // m.groups) * k])


def count_macs_thop(model: nn.Module, in_channels: int, height: int, width: int) -> int:
    """The thop cross-check on a ``meta`` copy (thop adds buffers; its hooks read only
    shapes, so no image-sized memory is allocated at any size), with the corrected counter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # thop imports distutils' LooseVersion
        import thop

    model = copy.deepcopy(model).to("meta").float().eval()
    x = torch.empty(1, in_channels, height, width, device="meta")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        macs, _ = thop.profile(model, inputs=(x,), verbose=False,
                               custom_ops={nn.ConvTranspose2d: _thop_convtranspose})
    return int(macs)


def profile(spec, height: int = 256, width: int = 256, thop_check: bool = True) -> dict:
    """Parameters, MACs (headline and thop), input and output shapes of one image."""
    spec = variants.parse(spec)
    model, x, y, macs = _meta_forward(spec, height, width)
    out = {
        "name": spec.name,
        "spec": spec.to_dict(),
        "params": count_params(model),
        "macs": macs,
        "input_shape": list(x.shape),
        "output_shape": list(y.shape),
    }
    if thop_check:
        try:
            out["macs_thop"] = count_macs_thop(model, spec.in_channels, height, width)
        except ImportError as e:  # thop not installed, or (Python >= 3.12) its distutils import fails
            out["macs_thop"], out["thop_missing"] = None, str(e).splitlines()[0]
    return out
