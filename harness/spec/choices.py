"""What a training protocol chooses by name: one registry (name -> constructor) for each of
optimizers, learning-rate schedules, losses and precisions. ``Protocol`` validates its
fields against these keys and training builds from the same entries, so a name that
validates always builds.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F

from ..metrics import IGNORE, metric

# --------------------------------------------------------------------------- optimizers
# (protocol, parameters) -> torch optimizer
OPTIMIZERS = {
    "adam": lambda p, params: torch.optim.Adam(params, lr=p.lr, weight_decay=p.weight_decay),
    "adamw": lambda p, params: torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay),
    "rmsprop": lambda p, params: torch.optim.RMSprop(  # seed 001's choice
        params, lr=p.lr, weight_decay=p.weight_decay, momentum=p.momentum),
    "sgd": lambda p, params: torch.optim.SGD(
        params, lr=p.lr, weight_decay=p.weight_decay, momentum=p.momentum, nesterov=p.momentum > 0),
}

# --------------------------------------------------------------------------- schedules
# progress t in [0, 1] after warm-up -> factor of the base learning rate
SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda t: 1.0,
    "cosine": lambda t: 0.5 * (1 + math.cos(math.pi * t)),
    "poly": lambda t: (1 - t) ** 0.9,
}


def lr_factor(protocol, step: int) -> float:
    """Linear warm-up over ``protocol.warmup`` steps, then the named schedule."""
    if step < protocol.warmup:
        return (step + 1) / protocol.warmup
    t = (step - protocol.warmup) / max(1, protocol.steps - protocol.warmup)
    return SCHEDULES[protocol.schedule](t)


# --------------------------------------------------------------------------- losses
# A loss term is made for the task (number of classes, background included) and maps
# logits (N, K, h, w) and targets (N, h, w), where IGNORE marks pixels left out, to a scalar.

def cross_entropy(num_classes: int):
    """Binary cross-entropy with one logit, softmax cross-entropy with several."""
    if num_classes > 2:
        return lambda logits, target: F.cross_entropy(logits, target, ignore_index=IGNORE)

    def bce(logits, target):
        valid = (target != IGNORE).float()
        per_px = F.binary_cross_entropy_with_logits(logits[:, 0], (target == 1).float(), reduction="none")
        return (per_px * valid).sum() / valid.sum().clamp_min(1)

    return bce


def dice(num_classes: int):
    """segmentation-models-pytorch's DiceLoss on logits."""
    import segmentation_models_pytorch as smp

    binary = num_classes <= 2
    loss = smp.losses.DiceLoss("binary" if binary else "multiclass", from_logits=True, ignore_index=IGNORE)
    return lambda logits, target: loss(logits, target.unsqueeze(1) if binary else target)


def _sum_of(*terms):
    def make(num_classes: int):
        parts = [term(num_classes) for term in terms]

        def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            logits = logits.float()
            return sum(part(logits, target) for part in parts)

        return loss

    return make


# ``bce`` and ``ce`` both name the cross-entropy of the task (binary or softmax).
LOSSES = {
    "bce": _sum_of(cross_entropy),
    "ce": _sum_of(cross_entropy),
    "dice": _sum_of(dice),
    "bce+dice": _sum_of(cross_entropy, dice),
    "ce+dice": _sum_of(cross_entropy, dice),
}

# --------------------------------------------------------------------------- selection
# ``protocol.select`` names a metric of ``harness.metrics`` (its validation score, in its own
# direction) or TRAIN_LOSS: the lowest mean training loss between validation points (seed
# 001's rule, which the seed applies per batch).
TRAIN_LOSS = "train_loss"


def selection_label(select: str) -> str:
    """How the methods name what the weights were selected on."""
    if select == TRAIN_LOSS:
        return "lowest mean training loss between validation points (seed 001's rule; no validation split used)"
    return f"best validation {metric(select).label}"


# --------------------------------------------------------------------------- precision
# autocast dtype, on CUDA only (CPU runs are float32). fp16 (GPUs without bf16 tensor cores:
# V100, T4) trains with a gradient scaler (``train._step``).
PRECISIONS = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """The precision of a run, resolved once where the run starts and passed down:
    ``amp()`` opens a fresh autocast context (a null context when autocast is off)."""

    dtype: str  # what the record states: "float32", "bfloat16" or "float16"
    amp: Callable[[], ContextManager]


def resolve_precision(name: str, device: torch.device) -> Precision:
    dtype = PRECISIONS[name]
    if dtype is None or device.type != "cuda":
        return Precision("float32", contextlib.nullcontext)
    return Precision(str(dtype).removeprefix("torch."), lambda: torch.autocast("cuda", dtype=dtype))
