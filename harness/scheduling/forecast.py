"""``unet-ablate plan``: what a sweep holds and what it will cost, before anything runs.

The estimate of one run is arithmetic on its MACs (``cost.count_macs`` on ``meta``, per
distinct network and input size), at an effective rate of ``peak x MFU``:

* training: ``steps x batch x 3 x 2 x MACs`` of the training input (forward, and a backward
  of twice the forward);
* validation: every ``eval_every`` steps, one forward of each validation image;
* test: one forward of each test image per inference form;
* measurement: ``warmup + repeats`` batches and as many batch-1 calls per form (on CPU,
  ``warmup`` of each, then timed calls for at least ``min_run_time`` each way);
* whole-map metrics on the CPU: ``METRIC_S_PER_MPIX`` seconds per megapixel per foreground
  class (MONAI's HD95 and NSD dominate; measured here) for each test image and form, over
  ``evaluate.MAX_METRIC_WORKERS`` processes for a CUDA run (a node with that many cores
  to spare is assumed);
* checkpoints: at most ``train.CHECKPOINT_BUDGET`` of the training time;
* ``RUN_OVERHEAD_S`` per run (building the model, writing the record).

The rate: ``--device-peak`` (TFLOP/s) x ``--mfu``; else the GPU's own dense bf16 peak
(``measure.PEAK_BF16_TFLOPS``) where CUDA is present, else, for a sweep that asks for CUDA, an
H200's; on CPU ``CPU_TFLOPS_PER_THREAD`` per thread at MFU 1 (measured: an effective rate,
not a peak). The device is the sweep's in every case: ``--device-peak`` on a CPU sweep is the
CPU's rate per run (at MFU 1 unless ``--mfu`` says), and the estimate says device time, not
GPU time. Every assumption is printed with the figure, and ``--json`` holds them. Both flags
take positive finite numbers (``rate_number``), and their product is bounded
(``EFFECTIVE_TFLOPS``); a plan holds at most ``MAX_RUNS`` runs (``check_size``; a sweep's
seeds are bounded where it is read, ``spec.sweep.MAX_SEEDS``). A run counts as recorded as
``run`` reads it (``one_run.recorded``).
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import variants

from ..spec.sweep import Sweep
from ..store.layout import Layout
from ..training.cost import count_macs
from ..training.evaluate import MAX_METRIC_WORKERS
from ..training.train import CHECKPOINT_BUDGET
from .one_run import recorded
from .planning import PlannedRun

DEFAULT_MFU = 0.35
H200_BF16_TFLOPS = 989.0
# unet-w16-d4 training steps on one thread here: 0.09 TFLOP/s at 64x64 (batch 6), 0.12 at
# 96x96 (batch 8), counting 6 x MACs per image (an effective rate, not a peak).
CPU_TFLOPS_PER_THREAD = 0.1
# every whole-map metric of a 256 x 256 binary image (MONAI HD95 and NSD, clDice, Rand F,
# VI): 60 ms on one core here (0.066 Mpix), after the first call's imports.
METRIC_S_PER_MPIX = 0.9
RUN_OVERHEAD_S = 5.0
EFFECTIVE_TFLOPS = (1e-9, 1e9)  # --device-peak x --mfu outside these: no device, and no finite estimate
MAX_RUNS = 100_000   # runs a plan holds at most (planning 50,000 takes about a minute here)


def rate_number(text: str) -> float:
    """``--device-peak`` and ``--mfu``: a positive finite number, and a normal float (not
    0, NaN, inf, negative, nor subnormal as 1e-320, which no division survives)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(v) and v >= sys.float_info.min):
        tiny = f" (subnormal: below {sys.float_info.min:.2g})" if 0 < v < sys.float_info.min else ""
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}{tiny}")
    return v


def check_size(sweep: Sweep) -> Sweep:
    """``sweep``, when it holds at most ``MAX_RUNS`` runs (data sets x variants x tuning points
    x seeds x folds), counted before any run is planned (planning a million takes a quarter
    of an hour); else a one-line ValueError."""
    points = len(sweep.tune.points) if sweep.tune is not None else 1
    runs = sum(len(sweep.variants) * points * len(sweep.seeds) * (d.spec.folds if d.spec.split == "kfold" else 1)
               for d in sweep.datasets)
    if runs > MAX_RUNS:
        raise ValueError(f"{sweep.source}: {runs:,} runs (data sets x variants{' x tuning points' * (points > 1)} "
                         f"x seeds x folds); expected at most {MAX_RUNS:,} in one plan")
    return sweep


def recorded_keys(out: Path, runs: list[PlannedRun]) -> set[str]:
    """The keys of ``runs`` recorded in the results folder ``out`` as ``run`` reads a record
    (``one_run.recorded``: a file that is no record of this schema is done again)."""
    layout = Layout(out)
    return {run.key for run in runs if recorded(layout.record(run.key)) is not None}


@dataclass(frozen=True)
class Rate:
    """The effective rate the estimate assumes, and where it comes from."""
    peak_tflops: float
    mfu: float
    source: str
    device: str = "cuda"  # or "cpu"

    @property
    def tflops(self) -> float:
        return self.peak_tflops * self.mfu


def device_rate(sweep: Sweep, peak: float | None = None, mfu: float | None = None) -> Rate:
    """The rate of the device the sweep's runs would take (see the module's text)."""
    import torch

    from ..training.measure import device_peak_tflops

    cuda = sweep.measure.device == "cuda" or (sweep.measure.device == "auto" and torch.cuda.is_available())
    threads = max(1, sweep.measure.threads // sweep.workers)  # on CPU, parallel workers split the threads
    if not cuda:
        if peak is None:
            peak, source = CPU_TFLOPS_PER_THREAD * threads, (
                f"CPU, {threads} thread(s) per run at {CPU_TFLOPS_PER_THREAD} TFLOP/s each (effective, measured)")
        else:
            source = f"--device-peak: the CPU's rate per run, {threads} thread(s)"
        rate = Rate(peak, 1.0 if mfu is None else mfu, source, "cpu")
    elif peak is not None:
        rate = Rate(peak, DEFAULT_MFU if mfu is None else mfu, "--device-peak")
    elif torch.cuda.is_available() and (own := device_peak_tflops(torch.device("cuda"))):
        rate = Rate(own, DEFAULT_MFU if mfu is None else mfu, f"{torch.cuda.get_device_name()}'s dense bf16 peak")
    else:
        rate = Rate(H200_BF16_TFLOPS, DEFAULT_MFU if mfu is None else mfu,
                    "an H200 SXM's dense bf16 peak (no GPU here; --device-peak to change)")
    low, high = EFFECTIVE_TFLOPS
    if not low <= rate.tflops <= high:
        raise ValueError(f"--device-peak x --mfu: {rate.peak_tflops:g} x {rate.mfu:g} = {rate.tflops:.3g} TFLOP/s "
                         f"effective; expected {low:g} to {high:g} TFLOP/s")
    return rate


@functools.lru_cache(maxsize=None)
def _count(spec, h: int, w: int) -> int:
    """MACs of ``spec`` for an h x w input, once per network and size (on ``meta``)."""
    return count_macs(spec, h, w)


def _macs(spec, h: int, w: int) -> int:
    """MACs of ``spec`` for an h x w image (its input geometry: crop mode sees a margin)."""
    return _count(spec, variants.input_geometry(spec, h)[0], variants.input_geometry(spec, w)[0])


def run_seconds(run: PlannedRun, rate: Rate) -> dict:
    """The estimated seconds of one run, by part (``total_s``: their sum)."""
    p, m = run.spec.protocol, run.spec.measure
    spec = variants.parse(run.spec.arch)
    flops = rate.tflops * 1e12
    n = variants.input_geometry(spec, p.patch)[0]
    train = p.steps * p.batch_size * 6 * _count(spec, n, n) / flops
    h, w = run.data.summary()["image_size"]["max_hw"]
    n_val, n_test = len(run.data.splits["val"]), len(run.data.splits["test"])
    forward = 2 * _macs(spec, h, w) / flops
    forms = len(spec.forms)
    validation = math.ceil(p.steps / p.eval_every) * n_val * forward
    test = forms * n_test * forward
    call = 2 * _macs(spec, *m.size) / flops  # one image
    if rate.device == "cpu":  # warm-up calls, then timed calls for at least min_run_time, each batch size
        measure = forms * (m.warmup * (m.batch_size + 1) * call + max(m.min_run_time, m.batch_size * call)
                           + max(m.min_run_time, call))
    else:
        measure = forms * (max(m.warmup, 1) + m.repeats) * (m.batch_size + 1) * call
    classes = max(run.data.num_classes - 1, 1)
    pool = MAX_METRIC_WORKERS if rate.device == "cuda" else 1  # a CUDA run's metrics: in a process pool
    metrics = forms * n_test * h * w / 1e6 * classes * METRIC_S_PER_MPIX / pool
    checkpoints = CHECKPOINT_BUDGET * train if p.checkpoint_every else 0.0  # at most (train.Checkpoints)
    parts = {"train_s": train, "checkpoint_s": checkpoints, "validation_s": validation, "test_s": test,
             "measure_s": measure, "metrics_s": metrics, "overhead_s": RUN_OVERHEAD_S}
    return {**parts, "total_s": sum(parts.values())}


def estimate(sweep: Sweep, runs: list[PlannedRun], recorded: set[str], rate: Rate) -> dict:
    """The plan of ``sweep`` as ``plan --json`` gives it: per data set and variant the runs,
    those recorded and to do, and the estimated seconds; the totals; the assumptions."""
    rows: dict = {}
    todo_s = 0.0
    for run in runs:
        key = (run.labels.dataset, run.labels.variant)
        row = rows.setdefault(key, {"dataset": key[0], "variant": key[1], "arch": variants.parse(run.spec.arch).name,
                                    "runs": 0, "recorded": 0, "todo": 0, "seconds_per_run": 0.0})
        seconds = run_seconds(run, rate)["total_s"]
        done = run.key in recorded
        row["runs"], row["recorded"], row["todo"] = row["runs"] + 1, row["recorded"] + done, row["todo"] + (not done)
        row["seconds_per_run"] = max(row["seconds_per_run"], seconds)
        todo_s += 0.0 if done else seconds
    total_s = sum(r["runs"] * r["seconds_per_run"] for r in rows.values())
    todo = sum(r["todo"] for r in rows.values())
    gpu = rate.device == "cuda"
    return {"sweep": sweep.name, "runs": len(runs), "recorded": len(runs) - todo, "todo": todo,
            "estimated_device_hours": total_s / 3600, "estimated_gpu_hours": total_s / 3600 if gpu else None,
            "estimated_todo_hours": todo_s / 3600, "workers": sweep.workers,
            "estimated_wall_hours": todo_s / 3600 / sweep.workers,
            "rate": {**asdict(rate), "effective_tflops": rate.tflops},
            "assumptions": {"metric_s_per_mpix": METRIC_S_PER_MPIX, "run_overhead_s": RUN_OVERHEAD_S},
            "variants": list(rows.values())}


def plan_text(est: dict) -> str:
    """``plan``'s table and totals, as printed."""
    width = max(len(f"{r['dataset']}: {r['variant']}") for r in est["variants"])
    lines = [f"{'data set: variant':<{width}}  runs  recorded  to do  est. min/run"]
    for r in est["variants"]:
        lines.append(f"{r['dataset'] + ': ' + r['variant']:<{width}}  {r['runs']:>4}  {r['recorded']:>8}  "
                     f"{r['todo']:>5}  {r['seconds_per_run'] / 60:>12.2f}")
    rate = est["rate"]
    device = "device" if est["estimated_gpu_hours"] is None else "GPU"
    lines += ["", f"{est['runs']} runs, {est['recorded']} recorded, {est['todo']} to do.",
              f"Estimated {device} time: {est['estimated_device_hours']:.2f} h for the whole sweep, "
              f"{est['estimated_todo_hours']:.2f} h for what is to do "
              f"({est['estimated_wall_hours']:.2f} h of wall time with {est['workers']} worker(s)).",
              f"Assumed: {rate['peak_tflops']:g} TFLOP/s ({rate['source']}) at MFU {rate['mfu']:.0%} = "
              f"{rate['effective_tflops']:.3g} TFLOP/s effective; whole-map metrics "
              f"{METRIC_S_PER_MPIX} s per megapixel and class on one CPU core"
              f"{f' ({MAX_METRIC_WORKERS} processes)' if rate['device'] == 'cuda' else ''}; "
              f"{RUN_OVERHEAD_S:g} s per run besides. "
              f"An estimate, not a measurement: `unet-ablate status` gives the ETA from finished runs."]
    return "\n".join(lines)
