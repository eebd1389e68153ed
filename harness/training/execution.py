"""How a run executes: ``Execution`` holds the device, precision, memory format and CPU
threads of one run, resolved once from its protocol and measurement settings and passed
whole to training, prediction and measurement (as timm's benchmark runner holds them)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
from torch import nn

from ..spec.choices import resolve_precision

# cuDNN autotuning on CUDA: training shapes are fixed within a run, so cuDNN times its
# algorithms once per shape and keeps the fastest (each record's env.cuda says it was on).
CUDNN_BENCHMARK = True


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("measure.device: cuda was asked for, but no CUDA device is available")
    return torch.device(name)


@dataclass(frozen=True)
class Execution:
    device: torch.device = torch.device("cpu")
    dtype: str = "float32"                                    # what the forward computes in
    amp: Callable[[], ContextManager] = contextlib.nullcontext  # the precision context of forwards
    channels_last: bool = False
    threads: int = 1

    @classmethod
    def resolve(cls, protocol, measure, threads: int | None = None) -> Execution:
        """The execution of a run: ``measure.device`` (``auto``: CUDA where present),
        ``protocol.amp`` on that device (float32 on the CPU), ``protocol.channels_last``, and
        ``threads`` (parallel workers split them) or ``measure.threads``."""
        device = resolve_device(measure.device)
        precision = resolve_precision(protocol.amp, device)
        return cls(device, precision.dtype, precision.amp, protocol.channels_last, threads or measure.threads)

    def configure(self) -> None:
        """Set what this process's torch computes with: the CPU threads, and on CUDA cuDNN's
        autotuning (``CUDNN_BENCHMARK``); before the record's environment is read."""
        torch.set_num_threads(self.threads)
        if self.cuda:
            torch.backends.cudnn.benchmark = CUDNN_BENCHMARK

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def place(self, model: nn.Module) -> nn.Module:
        """``model`` on the device, in the memory format."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def inputs(self, x: torch.Tensor, non_blocking: bool = False) -> torch.Tensor:
        """A batch on the device, in the memory format (``non_blocking``: from pinned memory,
        the copy queued behind the device's work)."""
        return x.to(self.device, non_blocking=non_blocking).contiguous(memory_format=self.memory_format)
