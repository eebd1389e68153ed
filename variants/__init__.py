"""The U-Net family compared by the harness: specs, models, presets and size helpers.

``variants`` never imports ``harness``.
"""
from .build import build
from .presets import PRESET_NOTES, PRESETS
from .sizes import margin, min_input_size, output_size
from .spec import AXES, ArchSpec, SmpSpec, Spec, from_dict, from_name, parse
from .unet import NestedUNet, UNet, encoder_channels

__all__ = ["AXES", "ArchSpec", "NestedUNet", "PRESETS", "PRESET_NOTES", "SmpSpec", "Spec",
           "UNet", "build", "encoder_channels", "from_dict", "from_name", "margin",
           "min_input_size", "output_size", "parse"]
