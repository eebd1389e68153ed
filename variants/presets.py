"""Named presets: the seed networks as their documents define them, and the baselines.

Where a seed's code has an evident bug the preset implements what the author meant:

* seed000 builds its blocks inside ``forward`` (never trained) and shares one BatchNorm
  between both convs of a block; here the blocks are registered in ``__init__`` with one
  BatchNorm per conv, and the model returns logits instead of ``Softmax2d``
  probabilities. Its input is fixed to 3 channels in the seed; here it is settable.
* seed002's printed decoder block has no activation between its convs (the author's
  repository applies ReLU); the preset applies the activation. No parameter changes.
* seed001 keeps the checkpoint of the lowest *training* loss; that is a harness matter
  (model selection uses the validation split) and does not change the network.
"""
from __future__ import annotations

from .spec import ArchSpec, SmpSpec

PRESETS: dict[str, ArchSpec | SmpSpec] = {
    "baseline": ArchSpec(),
    "seed000": ArchSpec(act="relu6"),
    "seed001": ArchSpec(up="bilinear", channels="matched", in_channels=1),
    "seed001-transpose": ArchSpec(up="transpose", channels="matched", in_channels=1),
    "seed002": ArchSpec(encoder="vgg16", up="bilinear", norm="nobn", classes=21),
    "seed003": ArchSpec(topology="unetpp", up="bilinear", width=32, in_channels=1),
    "seed003-ds": ArchSpec(topology="unetpp", up="bilinear", width=32, in_channels=1,
                           deep_supervision=True),
    "seed004": ArchSpec(norm="nobn", depth=3),
    "smp-unet-resnet34": SmpSpec(arch="unet", encoder="resnet34"),
    "smp-unetpp-resnet34": SmpSpec(arch="unetpp", encoder="resnet34"),
}
"""Each seed preset uses its document's default channels (seed001: 1 in, seed002: 21
classes, seed003: 1 in); ``profile`` and sweeps override ``in_channels`` and ``classes``."""

PRESET_NOTES = {
    "baseline": "plain U-Net that one-factor ablations start from",
    "seed000": "ReLU6, transposed up, BatchNorm (seed 000, bugs fixed)",
    "seed001": "classic PyTorch UNet(bilinear=True) (seed 001)",
    "seed001-transpose": "classic PyTorch UNet(bilinear=False) (seed 001)",
    "seed002": "U-Net with a VGG16 encoder, bilinear up (seed 002)",
    "seed003": "UNet++ without deep supervision (seed 003)",
    "seed003-ds": "UNet++ with deep supervision, 4 heads (seed 003)",
    "seed004": "3-level U-Net without BatchNorm (seed 004)",
    "smp-unet-resnet34": "smp Unet, resnet34 encoder, random init",
    "smp-unetpp-resnet34": "smp UnetPlusPlus, resnet34 encoder, random init",
}
