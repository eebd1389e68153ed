"""Weights come only from a local file the user names (no downloads)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"weights: {path}: no such file (a local state-dict file is expected)")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
        raise ValueError(f"weights: {path}: not a readable PyTorch state dict ({e.__class__.__name__})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"weights: {path}: expected a dict of tensors (a state dict)")
    return sd


def load_torchvision_vgg16(encoder: nn.Module, sd: dict[str, torch.Tensor], path: str) -> None:
    """Copy a torchvision ``vgg16`` / ``vgg16_bn`` state dict into the vgg16 encoder.

    The ``features.N`` entries are taken in order: 4-d weights are convs, 1-d weights
    with running statistics are BatchNorms; they must match the encoder layer by layer.
    """
    idx = sorted({int(k.split(".")[1]) for k in sd if k.startswith("features.")})
    convs = [i for i in idx if sd[f"features.{i}.weight"].dim() == 4]
    norms = [i for i in idx if f"features.{i}.running_mean" in sd]
    ours = [m for m in encoder.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    our_convs = [m for m in ours if isinstance(m, nn.Conv2d)]
    our_norms = [m for m in ours if isinstance(m, nn.BatchNorm2d)]
    if len(convs) < len(our_convs) or len(norms) < len(our_norms) or (our_norms == []) != (norms == []):
        raise ValueError(f"weights: {path}: expected a torchvision vgg16{'_bn' if our_norms else ''} "
                         f"state dict with features.N entries")
    for module, i in [*zip(our_convs, convs), *zip(our_norms, norms)]:
        src = {k.rsplit(".", 1)[1]: v for k, v in sd.items() if k.startswith(f"features.{i}.")}
        src.pop("num_batches_tracked", None)
        for name, value in src.items():
            target = getattr(module, name)
            if target.shape != value.shape:
                raise ValueError(f"weights: {path}: features.{i}.{name} has shape {tuple(value.shape)}, "
                                 f"the encoder expects {tuple(target.shape)} (vgg16 weights need width 64 "
                                 f"and 3 input channels)")
            with torch.no_grad():
                target.copy_(value)


def load_weights(model: nn.Module, path: str, encoder: nn.Module | None = None,
                 torchvision_vgg16: bool = False) -> None:
    """Load a state dict of the whole model, or of its encoder (a torchvision VGG16 for the
    family's vgg16 encoder, or an encoder state dict for smp models)."""
    sd = read_state_dict(path)
    own = model.state_dict()
    if set(sd) == set(own):
        model.load_state_dict(sd)
        return
    if torchvision_vgg16 and encoder is not None and any(k.startswith("features.") for k in sd):
        load_torchvision_vgg16(encoder, sd, path)
        return
    if encoder is not None:
        sd = {k: v for k, v in sd.items() if not k.startswith(("fc.", "classifier."))}
        missing, unexpected = encoder.load_state_dict(sd, strict=False)
        if not unexpected and len(missing) < len(encoder.state_dict()):
            if missing:
                raise ValueError(f"weights: {path}: the encoder misses {len(missing)} entries, e.g. {missing[0]}")
            return
    raise ValueError(f"weights: {path}: its keys match neither this model nor its encoder")
