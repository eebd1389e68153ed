"""WHAT is compared: the U-Net family, its specs, presets and size helpers.

  spec            ArchSpec (one field per axis) and SmpSpec; names and dicts both ways
  blocks          named parts; ACTIVATIONS, NORMS and UPSAMPLING registries
  unet            UNet and NestedUNet (UNet++, deep supervision, pruned forms); TOPOLOGIES
  sizes           crop-mode output and input sizes
  smp_baselines   segmentation-models-pytorch baselines (no downloaded weights)
  weights         weights from a local file only
  presets         the seed networks and baselines by name
  build           ``parse(x)`` (names, dicts, presets) and ``build(spec)``: the one way from
                  a spec to a model that returns logits

``variants`` never imports ``harness``.
"""
from .build import build, parse
from .presets import PRESET_NOTES, PRESETS
from .sizes import input_geometry, margin, min_input_size, min_pad_size, output_size
from .spec import AXES, ArchSpec, SmpSpec, Spec, from_dict, from_name
from .unet import NestedUNet, UNet, encoder_channels

__all__ = ["AXES", "ArchSpec", "NestedUNet", "PRESETS", "PRESET_NOTES", "SmpSpec", "Spec",
           "UNet", "build", "encoder_channels", "from_dict", "from_name", "input_geometry", "margin",
           "min_input_size", "min_pad_size", "output_size", "parse"]
