"""``build(spec)``: the one entry point from a spec to an ``nn.Module`` returning logits."""
from __future__ import annotations

from typing import Union

from torch import nn

from .smp_baselines import build_smp
from .spec import ArchSpec, Spec, parse
from .unet import TOPOLOGIES
from .weights import load_weights


def build(spec: Union[Spec, dict, str]) -> nn.Module:
    """Build the network of a spec (a spec object, dict, preset or readable name).

    Family models return logits; a deep-supervision UNet++ returns the list of its head
    logits in training mode and their mean (or its single pruned head) in eval mode.
    Weights load only from the local file named by ``spec.weights``.
    """
    spec = parse(spec)
    if isinstance(spec, ArchSpec):
        model = TOPOLOGIES[spec.topology](spec)
        if spec.weights:
            load_weights(model, spec.weights, encoder=model.encoder,
                         torchvision_vgg16=spec.encoder == "vgg16")
        return model
    model = build_smp(spec)
    if spec.weights:
        load_weights(model.model, spec.weights, encoder=model.model.encoder)
    return model
