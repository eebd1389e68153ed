"""``parse(x)``: a spec from what a user writes (a spec, a dict, a preset or a readable name);
``build(spec)``: the one entry point from a spec to an ``nn.Module`` returning logits."""
from __future__ import annotations

from typing import Union

from torch import nn

from .presets import PRESETS
from .smp_baselines import build_smp
from .spec import ArchSpec, SmpSpec, Spec, from_dict, from_name, name_fields
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


def with_channels(x: str, in_channels: int | None = None, classes: int | None = None,
                  names: tuple[str, str] = ("in_channels", "classes")) -> Spec:
    """The spec of ``x`` (a preset or a readable name) with ``in_channels`` and ``classes``
    where given; None keeps its own: the name's ``in<C>`` and ``k<n>`` tokens, a preset's
    channels, else 3 and 1. A value given beside a token that says otherwise is a ValueError
    naming both (the value by ``names``: a command line's flags)."""
    spec = parse(x)
    stated = {} if x in PRESETS else name_fields(x)
    for field, name, token, given in zip(("in_channels", "classes"), names, ("in", "k"), (in_channels, classes)):
        if given is None:
            continue
        if stated.get(field, given) != given:
            raise ValueError(f"{name} {given} contradicts the token {token}{stated[field]} of spec name {x!r}: "
                             f"expected one of them, or the same value")
        spec = spec.replace(**{field: given})
    return spec


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
