"""Watching training as researchers are used to: TensorBoard event files, one folder per run
(``unet-ablate run --tensorboard``, or ``[log] tensorboard = true`` in a sweep), under
``OUT/tensorboard/<data set>/<variant>/seed<k>[-fold<f>]`` (``run_folder``: one folder per
run, inside ``OUT/tensorboard``), so that ``tensorboard --logdir OUT/tensorboard`` compares
any runs live, offline on a cluster too. Where that folder cannot be written, ``run`` says so
before any run (``check_available``); a run that still cannot make its folder goes on without
event files, with a warning (``open_board``), as a run goes on without checkpoints.

Every ``EVERY`` training steps (and at evaluations): ``train/loss`` (the mean over those
steps), ``train/lr`` and ``train/img_s`` (the batch over their median step time; the step
that compiles left out); per evaluation: ``val/dice`` and, where the run selects its
weights on another metric, ``val/<metric>``. Three scalars cost about 0.2 ms here (each an
event record), so they are written every ``EVERY`` steps: under 0.5% of a 7 ms GPU step."""
from __future__ import annotations

import hashlib
import logging
import re
import statistics
from pathlib import Path

from ..fileio import check_folder_path, check_writable
from ..spec.choices import TRAIN_LOSS
from ..store.layout import Layout

log = logging.getLogger("unet_ablate")

EVERY = 10  # training steps per logged point
LONGEST = 100  # characters of a label kept as they are in a folder name (then cut, and a hash added)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_HASHED = re.compile(r"-[0-9a-f]{8}$")  # how a changed label ends: no label kept as it is ends so


def folder_name(label: str) -> str:
    """The folder name of a data set's or variant's label: the label itself where it holds
    only letters, digits, '.', '_' and '-', does not start with '.' (so never '.' or '..'),
    and is neither longer than ``LONGEST`` nor ending as a changed name does; otherwise its
    safe characters (others, and a leading '.', become '_'; cut to ``LONGEST``), '-' and 8
    hex digits of the SHA-1 of the exact label. So two labels never share a folder
    (``up=bilinear`` and ``up_bilinear``, ``α`` and ``β``) and none leaves its parent."""
    plain = re.sub(r"^\.", "_", _UNSAFE.sub("_", label))
    if plain == label and plain and len(plain) <= LONGEST and not _HASHED.search(plain):
        return plain
    return f"{plain[:LONGEST] or '_'}-{hashlib.sha1(label.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def run_folder(out: Path, dataset: str, variant: str, seed: int, fold: int | None) -> Path:
    """A run's event-file folder in the results folder ``out``:
    ``tensorboard/<data set>/<variant>/seed<k>[-fold<f>]``, each label through
    ``folder_name`` (one folder per run, always inside ``tensorboard``)."""
    run = f"seed{int(seed)}" + ("" if fold is None else f"-fold{int(fold)}")
    return Layout(out).tensorboard_dir / folder_name(dataset) / folder_name(variant) / run


def check_available(out: Path | None = None, asked_by: str = "--tensorboard") -> None:
    """A one-line ValueError, before anything runs, where TensorBoard cannot be written: no
    tensorboard package, or a file where the results folder ``out``'s TensorBoard folder
    belongs; an ``OSError`` naming the folder where no file can be made in it (or in its
    nearest parent that exists: a read-only file system, no permission)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as e:
        raise ValueError(f"{asked_by} needs the tensorboard package ({e}): pip install "
                         f"'unet-ablate[tensorboard]'") from None
    if out is None:
        return
    folder = Layout(out).tensorboard_dir
    check_folder_path(folder, "a TensorBoard folder (--tensorboard)")
    try:
        check_writable(folder)
    except OSError as e:
        raise OSError(e.errno, f"{e.strerror}: TensorBoard event files (--tensorboard) cannot be written "
                               f"there", e.filename) from None


def open_board(logdir: Path) -> TensorBoard | None:
    """The event files of one run in ``logdir``; None, with a warning, where they cannot be
    written (the run goes on without them: they watch it, the record holds its results)."""
    try:
        return TensorBoard(logdir)
    except OSError as e:
        log.warning("TensorBoard folder %s cannot be written (%s); this run goes on without event files",
                    logdir, e.strerror or e)
        return None


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
