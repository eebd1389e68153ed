"""The run specification: WHAT is trained (arch), on WHAT (data), HOW (protocol), how it
is MEASURED, and the seed. Its key is a hash of its canonical JSON, so the same spec is
never run twice and a killed sweep resumes where it stopped."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..config import boolean, choice, from_table, integer, is_int, number
from ..fileio import stable_key
from ..metrics import metric
from .choices import LOSSES, OPTIMIZERS, PRECISIONS, SCHEDULES, TRAIN_LOSS

DEVICES = ("auto", "cpu", "cuda")
_OFF_UNLESS_SET = ("checkpoint_every", "compile")  # keys added later: in a run key only when on
_DEFAULT_UNLESS_SET = {"select": "dice"}  # ... and only when not their default
RESUME_ONLY = ("checkpoint_every",)  # how a run can be resumed, never what it results in


@dataclass(frozen=True)
class Protocol:
    """The training protocol, identical for every variant of a sweep.

    ``optimizer``, ``schedule``, ``loss`` and ``amp`` name entries of the registries in
    :mod:`harness.spec.choices`. The weights with the best validation score on ``select`` (a
    metric of :mod:`harness.metrics`, in its own direction; checked every ``eval_every``
    steps) are kept; a sweep sets ``select`` to its ``[report] metric``; deep supervision trains on the mean loss of the
    model's outputs. ``checkpoint_every`` N > 0 saves a resumable checkpoint every N steps
    (0: none); it changes how a run can be resumed, never its result. ``compile`` trains
    through ``torch.compile`` (the training forward and its backward; evaluation and the
    weights stay those of the plain module); the time the first step spends compiling is
    recorded apart from the step time."""

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
    checkpoint_every: int = 0
    compile: bool = False
    select: str = "dice"

    def __post_init__(self):
        for k in ("steps", "batch_size", "patch", "eval_every"):
            integer(f"protocol.{k}", getattr(self, k), 1)
        integer("protocol.warmup", self.warmup, 0)
        integer("protocol.checkpoint_every", self.checkpoint_every, 0)
        choice("protocol.optimizer", self.optimizer, OPTIMIZERS)
        choice("protocol.schedule", self.schedule, SCHEDULES)
        choice("protocol.loss", self.loss, LOSSES)
        choice("protocol.amp", self.amp, PRECISIONS)
        number("protocol.lr", self.lr, 0, strict=True)
        number("protocol.weight_decay", self.weight_decay)
        number("protocol.momentum", self.momentum)
        boolean("protocol.augment", self.augment)
        boolean("protocol.channels_last", self.channels_last)
        boolean("protocol.compile", self.compile)
        try:
            if self.select != TRAIN_LOSS:
                metric(self.select)
        except ValueError as e:
            raise ValueError(f"protocol.select: {e} (or {TRAIN_LOSS!r})") from None

    def to_dict(self) -> dict:
        """The canonical dict (``checkpoint_every`` and ``compile`` only when on, ``select``
        only when not Dice, so the dicts and keys of runs without them stay as they were;
        ``RunSpec.key`` leaves ``checkpoint_every`` out)."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items()
                if (k not in _OFF_UNLESS_SET or v) and _DEFAULT_UNLESS_SET.get(k, object()) != v}

    def result_settings(self) -> dict:
        """``to_dict`` without ``RESUME_ONLY``: what the result of a run depends on (its key,
        and what an in-run checkpoint must have been written under)."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUME_ONLY}

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        return from_table(cls, d, "protocol")


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
        if not (isinstance(self.size, tuple) and len(self.size) == 2
                and all(is_int(s) and s > 0 for s in self.size)):
            raise ValueError(f"measure.size: expected [height, width], got {self.size!r}")
        for k in ("batch_size", "threads", "repeats"):
            integer(f"measure.{k}", getattr(self, k), 1)
        integer("measure.warmup", self.warmup, 0)
        integer("measure.keep_predictions", self.keep_predictions, 0)
        number("measure.min_run_time", self.min_run_time, 0, strict=True)
        choice("measure.device", self.device, DEVICES)

    @classmethod
    def from_dict(cls, d: dict) -> "Measure":
        return from_table(cls, d, "measure")


@dataclass(frozen=True)
class RunSpec:
    arch: dict          # variants spec dict (in_channels / classes filled from the data)
    data: dict          # harness.data.DataSpec dict
    protocol: Protocol = field(default_factory=Protocol)
    measure: Measure = field(default_factory=Measure)
    seed: int = 0
    fold: int | None = None  # k-fold cross-validation: the test fold (None: a holdout split)

    def to_dict(self) -> dict:
        """The canonical dict (``fold`` only for k-fold runs, so holdout keys stay as they were)."""
        d = {"arch": self.arch, "data": self.data, "protocol": self.protocol.to_dict(),
             "measure": dataclasses.asdict(self.measure), "seed": self.seed}
        return d if self.fold is None else {**d, "fold": self.fold}

    @property
    def key(self) -> str:
        """The hash of the canonical dict, without ``protocol.checkpoint_every``: checkpoints
        change how a run can be resumed, never its result, so turning them on or changing
        their interval keeps every record."""
        return stable_key({**self.to_dict(), "protocol": self.protocol.result_settings()}, 16)
