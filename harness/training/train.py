"""Training under one protocol: patches, augmentation, the loss, optimizer and schedule the
protocol names (built from ``harness.spec.choices``), model selection on the validation split,
divergence detection, and checkpoints from which a killed run resumes where it stopped.

Timing: each step (forward, backward, optimizer; on GPU between a synchronize and the
loss's one ``.item()``) is timed alone, the sampling of its batch left out; training
images/s is the batch over the median step after 3 warm-up steps. Under
``protocol.compile`` the first step, which compiles, is recorded as ``compile_s`` and left
out of the step times. Achieved TFLOP/s and MFU come from the MACs of the training input,
counted once on ``meta`` before the loop."""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

import variants

from ..fileio import write_atomic
from ..metrics import metric
from ..spec.choices import LOSSES, OPTIMIZERS, TRAIN_LOSS, lr_factor
from ..spec.protocol import Protocol
from .batches import Batches, PatchSampler
from .cost import count_macs
from .evaluate import validation_scores
from .execution import Execution
from .measure import device_peak_tflops, mfu, train_tflops

log = logging.getLogger("unet_ablate")

CHECKPOINT_BUDGET = 0.02  # the most of the training time between saves that a save may take (None: off)


@dataclass
class FitResult:
    status: str = "ok"  # ok | diverged
    error: str | None = None
    steps: int = 0
    best_step: int | None = None
    best_val_dice: float | None = None   # the validation Dice of the selected weights
    selected_on: str = "dice"            # the metric the weights were selected on (protocol.select)
    best_val_score: float | None = None  # its validation value at best_step
    train_img_s: float | None = None
    peak_mem_mb: float | None = None
    history: list[dict] = field(default_factory=list)
    compile_s: float | None = None     # protocol.compile: the first step's time (it compiles)
    train_tflops: float | None = None  # 3 x 2 x MACs per training input x train_img_s / 1e12
    mfu: float | None = None           # train_tflops / the GPU's dense bf16 peak (None: unknown, CPU)


def _outputs(out) -> list[torch.Tensor]:
    """The logits a model returns in training: one tensor, or a list (deep supervision)."""
    return out if isinstance(out, list) else [out]


@dataclass
class TrainState:
    """What training carries from step to step and a checkpoint holds: the model, optimizer,
    schedule and both random generators (live objects), the step reached, the best weights
    so far with their step and score, the history, the step times and
    losses since the last evaluation, the peak memory, the compile time, and the clock."""
    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    rng: np.random.Generator
    device: torch.device
    step: int = 0
    best_state: dict | None = None
    best_step: int | None = None
    best_val_dice: float | None = None
    best_val_score: float | None = None
    history: list[dict] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    peak: float = 0.0
    compile_s: float | None = None
    start: float = field(default_factory=time.perf_counter)  # the clock's zero (a resumed run: earlier)
    scaler: torch.amp.GradScaler | None = None  # fp16 on CUDA: the gradient scaler
    sampler_state: dict | None = None  # prefetching: the sampler's state after the last batch used

    KEPT = ("best_state", "best_step", "best_val_dice", "best_val_score", "history", "step_times", "losses",
            "peak", "compile_s")

    def state_dict(self) -> dict:
        cuda = self.device.type == "cuda"
        return {"step": self.step, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "numpy_rng": self.sampler_state or self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None,
                **{k: getattr(self, k) for k in self.KEPT}, "elapsed_s": time.perf_counter() - self.start,
                **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {})}

    def load(self, ck: dict) -> None:
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.rng.bit_generator.state = ck["numpy_rng"]
        torch.set_rng_state(ck["torch_rng"].cpu())
        if self.device.type == "cuda" and ck["cuda_rng"] is not None:
            torch.cuda.set_rng_state(ck["cuda_rng"].cpu(), self.device)
        self.step = ck["step"]
        for k in self.KEPT:
            setattr(self, k, ck.get(k))
        if self.best_val_score is None:  # a checkpoint written before selection on any metric: Dice
            self.best_val_score = self.best_val_dice
        self.start -= ck["elapsed_s"]

    def keep_if_best(self, dice: float, val: float, higher_is_better: bool = True) -> None:
        """Select the weights: keep a copy of them when ``val`` beats the best so far (in
        its metric's direction; NaN never beats a number)."""
        best = self.best_val_score
        if self.best_step is None or (not math.isnan(val) and (
                math.isnan(best) or (val > best if higher_is_better else val < best))):
            self.best_val_dice, self.best_val_score, self.best_step = dice, val, self.step
            # on the CPU: no second copy of the weights held on the GPU (on the CPU: a clone)
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}


def _identity(model: nn.Module, protocol: Protocol, seed: int) -> dict:
    """What a checkpoint must have been written for: this protocol, seed and model layout."""
    return {"format": 1, "protocol": protocol.result_settings(), "seed": seed,  # any interval resumes
            "params": [[k, list(v.shape)] for k, v in model.state_dict().items()]}


def _read_checkpoint(path: Path | None, identity: dict) -> dict | None:
    """The checkpoint at ``path`` when it was written for this run; None (with a warning
    when there is a file) otherwise: the run starts from step 0."""
    if path is None or not path.exists():
        return None
    try:
        # on the CPU: load_state_dict places each tensor (a map_location of the GPU would put
        # Adam's `step` counters there, and every step would then sync per parameter)
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ck, dict) or ck.get("identity") != identity:
            raise ValueError("written for another run")
    except Exception as e:  # noqa: BLE001 - a bad checkpoint costs the steps it held, never the run
        log.warning("checkpoint %s ignored (%s); training starts from step 0",
                    path, str(e).splitlines()[0] if str(e) else e.__class__.__name__)
        return None
    return ck


def discard_checkpoint(path: Path) -> None:
    """Remove a run's checkpoint, and the temporary file of a save that was killed."""
    path = Path(path)
    for p in [path, *path.parent.glob(f".{path.name}.*.tmp")]:
        p.unlink(missing_ok=True)


def compile_module(model: nn.Module) -> nn.Module:
    """What runs the training forward under ``protocol.compile``: a ``torch.compile``
    wrapper of ``model`` that shares its parameters. Its ``state_dict`` keys carry an
    ``_orig_mod.`` prefix, so weights are saved, selected and loaded through ``model``
    itself, and evaluation runs ``model`` (eager: its tiles change shape). Compilation
    happens in the first step; an error there fails the run, never falls back to eager."""
    torch._dynamo.reset()  # each run compiles afresh: no cache limit shared by a sweep's runs
    return torch.compile(model, dynamic=False)


def _compile_failure(e: Exception) -> str:
    """One line for an error in the step that compiles (dynamo wraps the backend's)."""
    inner = getattr(e, "inner_exception", None) or e.__cause__ or e
    text = str(inner).strip().splitlines()
    return f"torch.compile failed in the first step: {inner.__class__.__name__}: {text[0] if text else ''}"


def _resume(state: TrainState, checkpoint: Path | None, identity: dict, steps: int, progress) -> None:
    """Load the checkpoint at ``checkpoint`` into ``state`` when it was written for this run."""
    ck = _read_checkpoint(checkpoint, identity)
    if ck is None:
        return
    state.load(ck)
    log.info("resuming training at step %d of %d from %s", state.step, steps, checkpoint)
    if progress is not None:
        progress.update(state.step)


def _save(checkpoint: Path, identity: dict, state: TrainState) -> bool:
    """Save the state of training atomically; False (with a warning) when it cannot be
    saved. Any error counts, not only OSError: torch.save raises RuntimeError when the disk
    fills mid-write. The partial file is removed (``write_atomic``); a checkpoint saved
    earlier stays, whole, to resume from."""
    try:
        write_atomic(checkpoint, lambda f: torch.save({"identity": identity, **state.state_dict()}, f))
    except Exception as e:  # noqa: BLE001 - a resume aid: the run goes on without one
        text = str(e).strip().splitlines()
        log.warning("checkpoint %s not saved (%s: %s); this run goes on without checkpoints", checkpoint,
                    e.__class__.__name__, text[0] if text else "")
        return False
    return True


def _step(forward, loss_fn, opt, x, y, ex: Execution, compiling: bool, scaler=None) -> float:
    """One training step (forward, backward, optimizer): its loss, read once (the step's one
    synchronization, so step times are real on a GPU). ``scaler`` (fp16): the loss is scaled
    before backward, and a step whose gradients overflowed is skipped (``torch.amp.GradScaler``)."""
    try:
        with ex.amp():
            outputs = _outputs(forward(x))
        loss = sum(loss_fn(o, y) for o in outputs) / len(outputs)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return loss.item()
    except Exception as e:
        if compiling:  # the record's one line names what failed, not dynamo's wrapper
            raise RuntimeError(_compile_failure(e)) from e
        raise


def _validate(state: TrainState, spec, val_x, val_y, num_classes: int, ex: Execution, lr: float,
              select: str, monitor=None) -> None:
    """Score the validation split, log it in the history and keep the weights if best on
    ``select`` (the history gains ``val_score``, its value, when that is not Dice)."""
    if ex.cuda:  # training memory only: validation passes are not counted
        state.peak = max(state.peak, torch.cuda.max_memory_allocated(ex.device) / 2**20)
    by_loss = select == TRAIN_LOSS  # the mean training loss since the last validation, lowest kept
    dice, val = validation_scores(state.model, spec, val_x, val_y, num_classes, ex, "dice" if by_loss else select)
    if by_loss:
        val = float(np.mean(state.losses))
    state.history.append({"step": state.step, "loss": float(np.mean(state.losses)), "val_dice": dice,
                          **({} if select == "dice" else {"val_score": val}),
                          "lr": lr, "elapsed_s": time.perf_counter() - state.start})
    state.losses = []
    if ex.cuda:
        torch.cuda.reset_peak_memory_stats(ex.device)
    state.keep_if_best(dice, val, not by_loss and metric(select).higher_is_better)
    if monitor is not None:
        monitor.validation(state.step, dice, select, val)


def _result(state: TrainState, protocol: Protocol, macs: int, ex: Execution, result: FitResult) -> FitResult:
    """The FitResult of a finished (or diverged) training, from its state."""
    result.steps, result.best_step, result.best_val_dice = state.step, state.best_step, state.best_val_dice
    result.selected_on, result.best_val_score = protocol.select, state.best_val_score
    result.history = state.history
    warm = state.step_times[3:] or state.step_times
    if warm:
        result.train_img_s = protocol.batch_size / float(np.median(warm))
        result.train_tflops = train_tflops(macs, result.train_img_s)
        result.mfu = mfu(result.train_tflops, device_peak_tflops(ex.device))
    result.compile_s = state.compile_s
    if ex.cuda:
        result.peak_mem_mb = state.peak
    return result


class Checkpoints:
    """Where and when the state of training is saved: every ``protocol.checkpoint_every``
    steps, or a multiple of that where a save (measured) would take more than
    ``CHECKPOINT_BUDGET`` of the training time between two saves (a full-width model with
    Adam and its best weights is about 0.5 GiB, with fsync). Off without a path or interval,
    and after a save fails."""

    def __init__(self, path: Path | None, protocol: Protocol, model: nn.Module, seed: int):
        self.path, self.every = path, protocol.checkpoint_every if path is not None else 0
        self.identity = _identity(model, protocol, seed) if self.every else None
        self.interval, self.next = self.every, self.every

    def start(self, step: int) -> None:
        """The first save after ``step`` (a resumed run's), on the interval's grid."""
        if self.every:
            self.next = (step // self.every + 1) * self.every

    def due(self, step: int, last: bool) -> bool:
        return bool(self.every) and step >= self.next and not last

    def save(self, state: TrainState) -> None:
        start = time.perf_counter()
        if not _save(self.path, self.identity, state):
            self.every = 0
            return
        cost = time.perf_counter() - start
        if CHECKPOINT_BUDGET and state.step_times:
            step_s = float(np.median(state.step_times[-50:]))
            need = math.ceil(cost / (CHECKPOINT_BUDGET * step_s * self.every)) * self.every
            if need > self.interval:
                log.debug("checkpoints every %d steps instead of %d: a save takes %.2f s, steps %.1f ms",
                          need, self.every, cost, step_s * 1000)
                self.interval = need
        self.next = state.step + self.interval


def fit(model: nn.Module, spec, data, protocol: Protocol, seed: int, ex: Execution,
        progress=None, checkpoint: Path | None = None, monitor=None) -> FitResult:
    """Train ``model`` in place and leave it holding the weights with the best validation
    score on ``protocol.select`` (Dice by default), as the run executes (``ex``: device,
    precision, memory format). ``progress`` is an optional tqdm bar over steps. With
    ``checkpoint`` and ``protocol.checkpoint_every`` N > 0, the state of training is saved
    there (atomically; ``Checkpoints``), and a checkpoint found there for this run is resumed
    from: the result is the one an uninterrupted run gets (bit for bit on CPU; timings
    aside). The caller removes it when the run ends. With ``protocol.compile`` the training
    forward runs through ``compile_module``. A CUDA run samples its batches ahead in a
    thread (``batches.Batches``): the same batches, off the critical path. ``monitor``
    (``monitor.TensorBoard``) is told each step's loss, rate and img/s and each evaluation."""
    n = variants.input_geometry(spec, protocol.patch)[0]  # the training input, as the model sees it
    macs = count_macs(spec, n, n)  # on meta, once: nothing of it inside the timed loop
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    train_x, train_y, _ = data.subset("train")
    sampler = PatchSampler(train_x, train_y, spec, protocol.patch, protocol.augment, rng)
    opt = OPTIMIZERS[protocol.optimizer](protocol, model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(protocol, s))
    if ex.cuda:
        torch.cuda.reset_peak_memory_stats(ex.device)
    state, result = TrainState(model, opt, sched, rng, ex.device), FitResult()
    if ex.cuda and ex.dtype == "float16":
        state.scaler = torch.amp.GradScaler("cuda")
    saver = Checkpoints(checkpoint, protocol, model, seed)
    if saver.every:
        _resume(state, checkpoint, saver.identity, protocol.steps, progress)
        saver.start(state.step)
    batches = Batches(sampler, protocol.batch_size, ex, prefetch=ex.cuda)  # after the resume: its generator
    try:
        with backward_outside_autocast(protocol.compile):
            _steps(state, result, batches, saver, spec, data, protocol, ex, progress, monitor)
    finally:
        batches.close()
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return _result(state, protocol, macs, ex, result)


def backward_outside_autocast(compiled: bool):
    """Under ``torch.compile``, the context in which the backward is traced as it runs: outside
    autocast (the loop runs only the forward under it), where torch assumes by default that
    it runs under the forward's autocast (``backward_pass_autocast``, torch >= 2.8)."""
    config = torch._functorch.config
    if not compiled or not hasattr(config, "backward_pass_autocast"):
        return contextlib.nullcontext()
    return config.patch(backward_pass_autocast="off")


def _steps(state: TrainState, result: FitResult, batches: Batches, saver: Checkpoints, spec, data,
           protocol: Protocol, ex: Execution, progress, monitor=None) -> None:
    """Train from ``state.step`` to ``protocol.steps`` (or until the loss diverges)."""
    forward = compile_module(state.model) if protocol.compile else state.model
    loss_fn = LOSSES[protocol.loss](data.num_classes)
    compiling = protocol.compile  # the first step of this process compiles
    val_x, val_y, _ = data.subset("val")
    while state.step < protocol.steps:
        state.model.train()
        x, y = batches.next()
        state.sampler_state = batches.state
        if ex.cuda:
            torch.cuda.synchronize(ex.device)  # the copy to the device is left out of the step's time
        t0 = time.perf_counter()  # the step itself: forward, backward, optimizer
        value = _step(forward, loss_fn, state.opt, x, y, ex, compiling, state.scaler)
        if not math.isfinite(value):  # checked here, not before backward: no sync mid-step
            result.status, result.error = "diverged", f"loss became {value} at step {state.step}"
            break
        lr = state.opt.param_groups[0]["lr"]  # the rate this step used
        state.sched.step()
        state.losses.append(value)
        took, compiled = time.perf_counter() - t0, compiling
        if compiling:
            state.compile_s, compiling = (state.compile_s or 0.0) + took, False
        else:
            state.step_times.append(took)
        state.step += 1
        if monitor is not None:
            monitor.step(state.step, value, lr, None if compiled else protocol.batch_size / took)
        last = state.step == protocol.steps
        if state.step % protocol.eval_every == 0 or last:
            _validate(state, spec, val_x, val_y, data.num_classes, ex, lr, protocol.select, monitor)
        if saver.due(state.step, last):
            saver.save(state)
        if progress is not None:
            progress.update(1)
            if state.history:
                progress.set_postfix(loss=f"{value:.3f}", val_dice=f"{state.history[-1]['val_dice']:.3f}")
