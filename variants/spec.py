"""Architecture specs: one frozen object per network, round-tripping to a dict and a name.

Two kinds of spec exist:

* :class:`ArchSpec` -- the configurable U-Net family of the seed documents, one field per
  design axis.
* :class:`SmpSpec` -- a segmentation-models-pytorch baseline (``smp-unet-resnet34``).

``from_dict`` and ``from_name`` make either kind from a dict or a readable name
(``variants.parse`` also takes preset names). Nothing here imports torch: the axes' values
are the names of the registries that build the modules (``blocks``, ``unet``), which a test
keeps in step with them.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Union

AXES: dict[str, tuple[str, ...]] = {
    "topology": ("unet", "unetpp"),       # unet.TOPOLOGIES
    "encoder": ("plain", "vgg16"),
    "act": ("relu", "relu6"),             # blocks.ACTIVATIONS
    "up": ("transpose", "bilinear"),      # blocks.UPSAMPLING
    "skip": ("pad", "crop"),
    "norm": ("bn", "nobn"),               # blocks.NORMS
    "channels": ("double", "matched"),
}
"""Categorical axes and their allowed values (the first is the default). The values are
also the tokens of a spec name; the registries they come from build the modules."""

ALIASES: dict[str, dict[str, str]] = {"norm": {"batch": "bn", "none": "nobn"}}
"""Other words accepted for an axis value (in dicts, names and sweep files)."""

_FORM_RE = re.compile(r"^L([1-9])$")


@dataclass(frozen=True)
class ArchSpec:
    """One member of the U-Net family.

    Channel scheme (``channels``):

    * ``double`` (classic U-Net, seeds 000/002/003/004): stage ``i`` has ``width * 2**i``
      channels, the bottleneck doubles the last stage; a transposed conv halves the
      channels it upsamples, bilinear interpolation keeps them, so with ``up="bilinear"``
      the first conv of each decoder block sees ``c_i + c_(i+1)`` instead of ``2 c_i``
      input channels. Nothing else changes: this is how channel counts are matched for
      the one-factor ``bilinear`` ablation (the upsampling operator is the only factor).
    * ``matched`` (seed 001): the bottleneck keeps the last stage's channels and each
      decoder block outputs the channels of the next skip, so the upsampled path always
      matches its skip and the up operator keeps channels (``ConvTranspose2d(c, c)``).

    ``form`` selects the inference form of a deep-supervision UNet++: ``mean`` (the
    "accurate" mode, mean of the head logits) or ``L1``..``L<depth>`` (the "fast" mode, a
    network pruned to what head k needs).
    """

    topology: str = "unet"
    encoder: str = "plain"
    act: str = "relu"
    up: str = "transpose"
    skip: str = "pad"
    norm: str = "bn"
    channels: str = "double"
    width: int = 64
    depth: int = 4
    in_channels: int = 3
    classes: int = 1
    deep_supervision: bool = False
    form: str = "mean"
    weights: str | None = None

    kind = "unet"

    def __post_init__(self) -> None:
        for axis, aliases in ALIASES.items():
            object.__setattr__(self, axis, aliases.get(getattr(self, axis), getattr(self, axis)))
        validate(self)

    # --- conversions -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @property
    def name(self) -> str:
        """Readable name; ``parse(spec.name) == spec`` (weights are not part of the name)."""
        parts = [self.topology, self.encoder, self.act, self.up, self.skip, self.norm]
        if self.channels != "double":
            parts.append(self.channels)
        parts += [f"w{self.width}", f"d{self.depth}", f"in{self.in_channels}",
                  f"k{self.classes}"]
        if self.deep_supervision:
            parts.append("ds")
        if self.form != "mean":
            parts.append(self.form)
        return "-".join(parts)

    def replace(self, **changes: Any) -> "ArchSpec":
        return dataclasses.replace(self, **changes)

    @property
    def forms(self) -> list[str]:
        """Inference forms worth scoring: ``mean`` and, with deep supervision, L1..Ld."""
        if not self.deep_supervision:
            return ["mean"]
        return ["mean"] + [f"L{k}" for k in range(1, self.depth + 1)]

    @property
    def form_column(self) -> int:
        """The decoder column whose head the form uses: k for ``Lk``, the depth for ``mean``."""
        return self.depth if self.form == "mean" else int(self.form[1:])


# How the ``dec<a>.<b>...`` token of an smp name sets each architecture's decoder (the keys
# of smp.MODEL_ARCHITECTURES_MAPPING, "unetpp" for its "unetplusplus"): the keyword
# arguments its numbers fill, in order. "*" takes the whole tuple as one argument (one
# number per decoder stage; their count is the encoder depth). An architecture with no
# entry, or an empty one, takes no token: it keeps smp's own decoder.
SMP_DECODER: dict[str, tuple[str, ...]] = {
    "unet": ("*decoder_channels",),
    "unetpp": ("*decoder_channels",),
    "manet": ("*decoder_channels",),
    "linknet": (),
    "fpn": ("decoder_pyramid_channels", "decoder_segmentation_channels"),
    "pspnet": ("psp_out_channels",),
    "deeplabv3": ("decoder_channels",),
    "deeplabv3plus": ("decoder_channels",),
    "pan": ("decoder_channels",),
    "upernet": ("decoder_channels",),
    "segformer": ("decoder_segmentation_channels",),
    "dpt": ("decoder_fusion_channels",),
}
SMP_ALIASES = {"unetplusplus": "unetpp"}  # smp's key -> the name runs have always been recorded under
UNET_DECODER = (256, 128, 64, 32, 16)     # the default of unet and unetpp specs (their keys say so)


@dataclass(frozen=True)
class SmpSpec:
    """A segmentation-models-pytorch baseline, always built with ``encoder_weights=None``.

    ``arch`` is a key of ``smp.MODEL_ARCHITECTURES_MAPPING`` (``unetpp`` for UnetPlusPlus;
    ``unetplusplus`` is read as it); ``decoder_channels`` what ``SMP_DECODER`` maps for it
    (None: smp's default decoder; unet and unetpp: ``UNET_DECODER``)."""

    arch: str = "unet"
    encoder: str = "resnet34"
    decoder_channels: tuple[int, ...] | None = None
    in_channels: int = 3
    classes: int = 1
    weights: str | None = None

    kind = "smp"
    form = "mean"
    forms = ["mean"]
    deep_supervision = False

    def __post_init__(self) -> None:
        arch = SMP_ALIASES.get(self.arch, self.arch)
        object.__setattr__(self, "arch", arch)
        if not (isinstance(arch, str) and re.fullmatch(r"[a-z][a-z0-9]*", arch)):
            raise ValueError(f"arch: expected an smp architecture ({', '.join(SMP_DECODER)}), got {arch!r}")
        if not self.encoder:
            raise ValueError("encoder: an smp encoder name is required (e.g. resnet34)")
        dec = self.decoder_channels
        if dec is None and arch in ("unet", "unetpp"):
            dec = UNET_DECODER
        if dec is not None:
            dec = tuple(int(c) for c in dec)
            if not dec or any(c < 1 for c in dec):
                raise ValueError(f"decoder_channels: expected positive integers, got {dec}")
            _check_decoder(arch, dec)
        object.__setattr__(self, "decoder_channels", dec)
        _check_positive(self, "in_channels", "classes")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["decoder_channels"] = None if self.decoder_channels is None else list(self.decoder_channels)
        return {"kind": self.kind, **d}

    @property
    def name(self) -> str:
        parts = ["smp", self.arch, self.encoder]
        if self.decoder_channels is not None and self.decoder_channels != SmpSpec(arch=self.arch).decoder_channels:
            parts.append("dec" + ".".join(map(str, self.decoder_channels)))
        if self.in_channels != 3:
            parts.append(f"in{self.in_channels}")
        if self.classes != 1:
            parts.append(f"k{self.classes}")
        return "-".join(parts)

    def decoder_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the smp model that ``decoder_channels`` sets."""
        if self.decoder_channels is None:
            return {}
        names = SMP_DECODER[self.arch]
        if names[0].startswith("*"):
            return {names[0][1:]: self.decoder_channels, "encoder_depth": len(self.decoder_channels)}
        return dict(zip(names, self.decoder_channels))

    def replace(self, **changes: Any) -> "SmpSpec":
        return dataclasses.replace(self, **changes)


def _check_decoder(arch: str, dec: tuple[int, ...]) -> None:
    names = SMP_DECODER.get(arch, ())
    if not names:
        raise ValueError(f"smp {arch}: takes no decoder token (dec...): its decoder is smp's own")
    if not names[0].startswith("*") and len(dec) > len(names):
        raise ValueError(f"smp {arch}: dec takes at most {len(names)} number(s) ({', '.join(names)}), got "
                         f"{'.'.join(map(str, dec))}")


Spec = Union[ArchSpec, SmpSpec]


def is_int(value: Any) -> bool:
    """The one integer rule of every spec and config table: an int, never a bool, a float
    such as 3.0 or a text such as "3"."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_positive(spec: Any, *names: str) -> None:
    for n in names:
        v = getattr(spec, n)
        if not is_int(v) or v < 1:
            raise ValueError(f"{n}: expected a positive integer, got {v!r}")


def validate(spec: ArchSpec) -> None:
    """Raise ``ValueError`` naming the axis when a combination cannot be built."""
    for axis, allowed in AXES.items():
        v = getattr(spec, axis)
        if v not in allowed:
            raise ValueError(f"{axis}: expected one of {', '.join(allowed)}; got {v!r}")
    _check_positive(spec, "width", "depth", "in_channels", "classes")
    if not isinstance(spec.deep_supervision, bool):
        raise ValueError(f"deep_supervision: expected true or false, got {spec.deep_supervision!r}")
    if spec.encoder == "vgg16" and spec.depth > 4:
        raise ValueError(f"depth: the vgg16 encoder has 5 stages, so depth is at most 4; got {spec.depth}")
    if spec.depth > 8:
        raise ValueError(f"depth: at most 8 downsamplings are supported; got {spec.depth}")
    if spec.deep_supervision and spec.topology != "unetpp":
        raise ValueError("deep_supervision: only the nested topology 'unetpp' has several heads")
    if spec.channels == "matched" and (spec.topology != "unet" or spec.encoder != "plain"):
        raise ValueError("channels: 'matched' (the seed 001 scheme) is defined for topology "
                         "'unet' with the 'plain' encoder only")
    if spec.form != "mean":
        m = _FORM_RE.match(spec.form)
        if not m:
            raise ValueError(f"form: expected 'mean' or L1..L{spec.depth}; got {spec.form!r}")
        if not spec.deep_supervision:
            raise ValueError(f"form: {spec.form} (a pruned fast-mode network) needs deep_supervision")
        if int(m.group(1)) > spec.depth:
            raise ValueError(f"form: {spec.form} does not exist at depth {spec.depth} (L1..L{spec.depth})")


# --- parsing ------------------------------------------------------------------------------
_TOKENS: dict[str, tuple[str, Any]] = {}
for _axis, _values in AXES.items():
    for _v in (*_values, *ALIASES.get(_axis, {})):
        _TOKENS[_v] = (_axis, ALIASES.get(_axis, {}).get(_v, _v))
_TOKENS["ds"] = ("deep_supervision", True)
_NUM_TOKENS = {"w": "width", "d": "depth", "in": "in_channels", "k": "classes"}
_NUM_RE = re.compile(r"^(w|d|in|k)(\d+)$")


def _given(fields: dict[str, Any], key: str, value: Any, name: str) -> None:
    """Set ``key`` from a token of ``name``; a second token for it with another value is an error."""
    if key in fields and fields[key] != value:
        raise ValueError(f"{key}: given twice in spec name {name!r}")
    fields[key] = value


def _arch_fields(name: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for tok in name.split("-"):
        if tok in _TOKENS:
            key, value = _TOKENS[tok]
        elif m := _NUM_RE.match(tok):
            key, value = _NUM_TOKENS[m.group(1)], int(m.group(2))
        elif _FORM_RE.match(tok) or tok == "mean":
            key, value = "form", tok
        else:
            raise ValueError(f"unknown token {tok!r} in spec name {name!r}")
        _given(fields, key, value, name)
    return fields


_DEC_RE = re.compile(r"^dec\d+(\.\d+)*$")


def _smp_fields(name: str) -> dict[str, Any]:
    parts = name.split("-")
    if len(parts) < 3:
        raise ValueError(f"smp spec name {name!r}: expected smp-<architecture>-<encoder> (architectures: "
                         f"{', '.join(SMP_DECODER)}), e.g. smp-fpn-resnet18")
    fields: dict[str, Any] = {"arch": parts[1]}
    rest = parts[2:]
    while len(rest) > 1:  # the tokens after the encoder, from the last (no encoder has a "-dec" part)
        tok = rest[-1]
        if tok.startswith("dec"):
            if not _DEC_RE.match(tok):
                raise ValueError(f"token {tok!r} in spec name {name!r}: expected dec<n>[.<n>...], the decoder's "
                                 f"channels as positive integers (e.g. dec128.64.32.16.8)")
            _given(fields, "decoder_channels", tuple(int(c) for c in tok[3:].split(".")), name)
        elif m := re.match(r"^(in|k)(\d+)$", tok):
            _given(fields, "in_channels" if m.group(1) == "in" else "classes", int(m.group(2)), name)
        else:
            break
        rest = rest[:-1]
    fields["encoder"] = "-".join(rest)
    return fields


def name_fields(name: str) -> dict[str, Any]:
    """The fields a readable spec name sets by its own tokens (those left out, which take
    their defaults, are absent): ``unet-w4-in1`` -> topology, width and in_channels. A
    ValueError where ``from_name`` raises one for the tokens."""
    name = name.strip()
    if not name:
        raise ValueError("empty spec name")
    return _smp_fields(name) if name.startswith("smp-") else _arch_fields(name)


def from_dict(d: dict[str, Any]) -> Spec:
    d = dict(d)
    kind = d.pop("kind", "unet")
    cls = {"unet": ArchSpec, "smp": SmpSpec}.get(kind)
    if cls is None:
        raise ValueError(f"kind: expected 'unet' or 'smp', got {kind!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{unknown[0]}: not a field of a {kind} spec (fields: {', '.join(sorted(known))})")
    return cls(**d)


def from_name(name: str) -> Spec:
    """Parse a readable name; tokens left out take their defaults (``unetpp-ds-L2``)."""
    fields = name_fields(name)
    return SmpSpec(**fields) if name.strip().startswith("smp-") else ArchSpec(**fields)
