"""The run specification: WHAT is trained (arch), on WHAT (data), HOW (protocol), how it
is MEASURED, and the seed. Its key is a hash of its canonical JSON, so the same spec is
never run twice and a killed sweep resumes where it stopped."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "poly")
LOSSES = ("bce", "ce", "dice", "bce+dice", "ce+dice")
AMP = ("none", "bf16")


def _fields_from(cls, d: dict, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key (expected one of {', '.join(sorted(known))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            v = d[f.name]
            if isinstance(v, list):
                v = tuple(v)
            kwargs[f.name] = v
    return cls(**kwargs)


def _check(cond: bool, key: str, expected: str, value: Any) -> None:
    if not cond:
        raise ValueError(f"{key}: expected {expected}, got {value!r}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Protocol:
    """The training protocol, identical for every variant of a sweep.

    ``loss``: ``bce`` and ``ce`` both mean the cross-entropy of the task (binary with one
    logit, softmax with several), ``dice`` is smp's DiceLoss, ``bce+dice`` their sum.
    The weights with the best validation Dice (checked every ``eval_every`` steps) are
    kept; deep supervision trains on the mean loss of the heads."""

    steps: int = 200
    batch_size: int = 8
    patch: int = 96
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup: int = 0
    loss: str = "bce+dice"
    augment: bool = True
    eval_every: int = 50
    channels_last: bool = True
    amp: str = "none"

    def __post_init__(self):
        for k in ("steps", "batch_size", "patch", "eval_every"):
            _check(_is_int(getattr(self, k)) and getattr(self, k) >= 1, f"protocol.{k}",
                   "a positive integer", getattr(self, k))
        _check(_is_int(self.warmup) and self.warmup >= 0, "protocol.warmup", "an integer >= 0", self.warmup)
        _check(self.optimizer in OPTIMIZERS, "protocol.optimizer", " | ".join(OPTIMIZERS), self.optimizer)
        _check(self.schedule in SCHEDULES, "protocol.schedule", " | ".join(SCHEDULES), self.schedule)
        _check(self.loss in LOSSES, "protocol.loss", " | ".join(LOSSES), self.loss)
        _check(self.amp in AMP, "protocol.amp", " | ".join(AMP), self.amp)
        _check(isinstance(self.lr, (int, float)) and self.lr > 0, "protocol.lr", "a positive number", self.lr)
        _check(isinstance(self.augment, bool), "protocol.augment", "true or false", self.augment)
        _check(isinstance(self.channels_last, bool), "protocol.channels_last", "true or false", self.channels_last)

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        return _fields_from(cls, d, "protocol")


@dataclass(frozen=True)
class Measure:
    """How cost is measured: MACs at ``size``, inference throughput at ``batch_size`` and
    latency at batch 1 (median of repeated timed runs after ``warmup`` calls), on a fixed
    number of ``threads``; ``device`` auto picks CUDA when present."""

    size: tuple[int, int] = (128, 128)
    batch_size: int = 8
    warmup: int = 2
    min_run_time: float = 0.5
    repeats: int = 20
    threads: int = 2
    device: str = "auto"
    keep_predictions: int = 3

    def __post_init__(self):
        _check(isinstance(self.size, tuple) and len(self.size) == 2 and all(_is_int(s) and s > 0 for s in self.size),
               "measure.size", "[height, width]", self.size)
        for k in ("batch_size", "threads", "repeats"):
            _check(_is_int(getattr(self, k)) and getattr(self, k) >= 1, f"measure.{k}", "a positive integer",
                   getattr(self, k))
        _check(_is_int(self.warmup) and self.warmup >= 0, "measure.warmup", "an integer >= 0", self.warmup)
        _check(_is_int(self.keep_predictions) and self.keep_predictions >= 0, "measure.keep_predictions",
               "an integer >= 0", self.keep_predictions)
        _check(self.device in ("auto", "cpu", "cuda"), "measure.device", "auto | cpu | cuda", self.device)

    @classmethod
    def from_dict(cls, d: dict) -> "Measure":
        return _fields_from(cls, d, "measure")


@dataclass(frozen=True)
class RunSpec:
    arch: dict          # variants spec dict (in_channels / classes filled from the data)
    data: dict          # harness.data.DataSpec dict
    protocol: Protocol = field(default_factory=Protocol)
    measure: Measure = field(default_factory=Measure)
    seed: int = 0

    def to_dict(self) -> dict:
        return {"arch": self.arch, "data": self.data, "protocol": dataclasses.asdict(self.protocol),
                "measure": dataclasses.asdict(self.measure), "seed": self.seed}

    @property
    def key(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha1(canonical.encode()).hexdigest()[:16]
