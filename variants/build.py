"""``parse(x)``: a spec from what a user writes (a spec, a dict, a preset or a readable name);
``build(spec)``: the one entry point from a spec to an ``nn.Module`` returning logits."""
from __future__ import annotations

from typing import Union

from torch import nn

from .presets import PRESETS
from .smp_baselines import build_smp
from .spec import ArchSpec, SmpSpec, Spec, from_dict, from_name
from .unet import TOPOLOGIES
from .weights import load_weights


def parse(x: Union[Spec, dict, str]) -> Spec:
    """A spec from a spec, a dict, a preset name or a readable spec name."""
    if isinstance(x, (ArchSpec, SmpSpec)):
        return x
    if isinstance(x, dict):
        return from_dict(x)
    if isinstance(x, str):
        if x in PRESETS:
            return PRESETS[x]
        try:
            return from_name(x)
        except ValueError as e:
            raise ValueError(f"{x!r} is neither a preset ({', '.join(PRESETS)}) nor a valid spec name: {e}") from None
    raise TypeError(f"cannot make a spec from {type(x).__name__}")


def build(spec: Union[Spec, dict, str]) -> nn.Module:
    """Build the network of a spec (a spec object, dict, preset or readable name).

    Family models return logits; a deep-supervision UNet++ returns the list of its head
    logits in training mode and their mean (or its single pruned head) in eval mode.
    Weights load only from the local file named by ``spec.weights``.
    """
    spec = parse(spec)
    if isinstance(spec, ArchSpec):
        net = TOPOLOGIES[spec.topology](spec)
        if spec.weights:
            load_weights(net, spec.weights, encoder=net.encoder, torchvision_vgg16=spec.encoder == "vgg16")
        return net
    padded = build_smp(spec)
    if spec.weights:
        load_weights(padded.model, spec.weights, encoder=padded.model.get_submodule("encoder"))
    return padded
