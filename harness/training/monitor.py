"""Watching training as researchers are used to: TensorBoard event files, one folder per run
(``unet-ablate run --tensorboard``, or ``[log] tensorboard = true`` in a sweep), under
``OUT/tensorboard/<data set>/<variant>/seed<k>[-fold<f>]`` (``layout.Layout.tensorboard``),
so that ``tensorboard --logdir OUT/tensorboard`` compares any runs live, offline on a
cluster too.

Every ``EVERY`` training steps (and at evaluations): ``train/loss`` (the mean over those
steps), ``train/lr`` and ``train/img_s`` (the batch over their median step time; the step
that compiles left out); per evaluation: ``val/dice`` and, where the run selects its
weights on another metric, ``val/<metric>``. Three scalars cost about 0.2 ms here (each an
event record), so they are written every ``EVERY`` steps: under 0.5% of a 7 ms GPU step."""
from __future__ import annotations

import statistics
from pathlib import Path

from ..spec.choices import TRAIN_LOSS

EVERY = 10  # training steps per logged point


def check_available() -> None:
    """A one-line ValueError, before anything runs, where TensorBoard cannot be written."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as e:
        raise ValueError(f"--tensorboard needs the tensorboard package ({e}): pip install "
                         f"'unet-ablate[tensorboard]'") from None


class TensorBoard:
    """The event files of one run."""

    def __init__(self, logdir: Path):
        from torch.utils.tensorboard import SummaryWriter

        Path(logdir).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(logdir))
        self.losses: list[float] = []
        self.rates: list[float] = []

    def step(self, step: int, loss: float, lr: float, img_s: float | None) -> None:
        self.losses.append(loss)
        if img_s is not None:
            self.rates.append(img_s)
        if step % EVERY == 0:
            self._flush(step, lr)

    def _flush(self, step: int, lr: float | None = None) -> None:
        if self.losses:
            self.writer.add_scalar("train/loss", statistics.fmean(self.losses), step)
        if lr is not None:
            self.writer.add_scalar("train/lr", lr, step)
        if self.rates:
            self.writer.add_scalar("train/img_s", statistics.median(self.rates), step)
        self.losses, self.rates = [], []

    def validation(self, step: int, dice: float, select: str, score: float) -> None:
        self._flush(step)
        self.writer.add_scalar("val/dice", dice, step)
        if select not in ("dice", TRAIN_LOSS):  # (the training loss is logged at every step)
            self.writer.add_scalar(f"val/{select}", score, step)

    def close(self) -> None:
        self.writer.close()
