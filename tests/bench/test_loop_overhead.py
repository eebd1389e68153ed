"""The harness's training loop against a bare PyTorch loop (`make bench-gpu`; `make bench`
runs the CPU case).

On one GPU: the baseline at full width (``unet-w64-d4``), 256x256 patches, batch 16, bf16
autocast, channels_last, Adam and the protocol's loss (bce+dice). A short ``fit`` on
synthetic membranes gives ``train_img_s`` (the batch over its median timed step); a bare
loop gives the bound: the same model, optimizer, loss, batch, memory format and autocast
(and ``torch.compile`` in the compile case), on batches already on the device, with no
synchronization between steps, timed over all its steps. The ratio must be at least
0.95. Printed beside it: achieved TFLOP/s and MFU (``harness.training.measure``), the fit loop's wall
images/s (sampling and the copy to the device included), peak memory and compile time.

Without CUDA the GPU cases skip, saying so; the CPU case compares the same two loops at a
small size (w16, 96x96, batch 8, float32)."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

import variants
from harness.data import DataSpec, load_dataset
from harness.scheduling.planning import arch_for_data
from harness.spec.choices import LOSSES, OPTIMIZERS, resolve_precision
from harness.spec.protocol import Protocol
from harness.training.cost import count_macs
from harness.training.execution import Execution
from harness.training.measure import device_peak_tflops, mfu, train_tflops
from harness.training.train import PatchSampler, fit
from variants import input_geometry

pytestmark = pytest.mark.slow
TARGET = 0.95
NO_CUDA = ("needs a CUDA device: `make bench-gpu` compares the training loops on a GPU only (`make bench` has "
           "the CPU case)")


@dataclasses.dataclass(frozen=True)
class Case:
    arch: str
    patch: int
    batch: int
    amp: str
    steps: int        # fit's steps (the first 3 are warm-up; under compile, 1 more compiles)
    bare_steps: int   # timed steps of each bare run (after warm-up)
    compile: bool = False
    rounds: int = 1   # fits, each between two bare runs; the best of each loop is compared

    def protocol(self) -> Protocol:
        return Protocol(steps=self.steps, batch_size=self.batch, patch=self.patch, optimizer="adam",
                        lr=1e-4, schedule="cosine", loss="bce+dice", augment=True,
                        eval_every=self.steps, channels_last=True, amp=self.amp, compile=self.compile)


GPU = Case("unet-w64-d4", 256, 16, "bf16", steps=60, bare_steps=50)
CPU = Case("unet-w16", 96, 8, "none", steps=12, bare_steps=8, rounds=2)  # 2 shared cores: noisy


class Clock:
    """A progress bar for ``fit`` that notes the wall time of every iteration: sampling,
    the copy to the device, the step and, on evaluation steps, validation."""

    def __init__(self):
        self.t = [time.perf_counter()]

    def update(self, n: int):
        self.t.append(time.perf_counter())

    def set_postfix(self, **kw):
        pass

    def img_s(self, batch: int) -> float:
        dt = np.diff(self.t)[3:-1]  # after warm-up, without the last (it validates)
        return batch / float(np.median(dt))


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(spec, data, case: Case, device: torch.device, amp) -> float:
    """Images/s of the plainest loop with the harness's settings: a few batches drawn by the
    same sampler, moved to the device once; each step forward (autocast), the mean loss of
    the outputs, zero_grad, backward, optimizer step; one synchronize before and after."""
    p = case.protocol()
    torch.manual_seed(0)
    model = variants.build(spec).to(device).to(memory_format=torch.channels_last).train()
    forward = torch.compile(model, dynamic=False) if case.compile else model
    loss_fn = LOSSES[p.loss](data.num_classes)
    opt = OPTIMIZERS[p.optimizer](p, model.parameters())
    train_x, train_y, _ = data.subset("train")
    sampler = PatchSampler(train_x, train_y, spec, p.patch, p.augment, np.random.default_rng(0))
    batches = [sampler.batch(p.batch_size) for _ in range(4)]
    batches = [(x.to(device).contiguous(memory_format=torch.channels_last), y.to(device).long())
               for x, y in batches]

    def step(x, y):
        with amp():
            out = forward(x)
        outs = out if isinstance(out, list) else [out]
        loss = sum(loss_fn(o, y) for o in outs) / len(outs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(5):  # warm-up (and compilation)
        step(*batches[i % len(batches)])
    _sync(device)
    t0 = time.perf_counter()
    for i in range(case.bare_steps):
        step(*batches[i % len(batches)])
    _sync(device)
    return case.bare_steps * p.batch_size / (time.perf_counter() - t0)


def compare(case: Case, device: torch.device) -> dict:
    Execution(device).configure()  # cuDNN autotuning as runs have it
    data = load_dataset(DataSpec("membranes", n_images=40, size=max(case.patch, 128), seed=0))
    spec = arch_for_data(variants.parse(case.arch), data)
    precision = resolve_precision(case.amp, device)
    bare, fits = [bare_loop(spec, data, case, device, precision.amp)], []
    for _ in range(case.rounds):
        torch.manual_seed(0)
        model = variants.build(spec).to(device).to(memory_format=torch.channels_last)
        clock = Clock()
        ex = Execution(device, precision.dtype, precision.amp, channels_last=True, threads=torch.get_num_threads())
        fr = fit(model, spec, data, case.protocol(), 0, ex, progress=clock)
        assert fr.status == "ok", fr.error
        del model
        fits.append((fr, clock))
        bare.append(bare_loop(spec, data, case, device, precision.amp))  # before and after each fit
    best = max(bare)
    fr, clock = max(fits, key=lambda f: f[0].train_img_s)
    n = input_geometry(spec, case.patch)[0]
    macs_tflops = train_tflops(count_macs(spec, n, n), best)
    peak = device_peak_tflops(device)
    out = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "case": case, "harness_img_s": fr.train_img_s, "bare_img_s": best, "bare_runs": bare,
        "ratio": fr.train_img_s / best, "loop_img_s": clock.img_s(case.batch),
        "harness_tflops": fr.train_tflops, "bare_tflops": macs_tflops,
        "harness_mfu": fr.mfu, "bare_mfu": mfu(macs_tflops, peak), "peak_tflops": peak,
        "peak_mem_mb": fr.peak_mem_mb, "compile_s": fr.compile_s,
    }
    pct = lambda v: "n/a (device not in measure.PEAK_BF16_TFLOPS)" if v is None else f"{v:.1%}"  # noqa: E731
    out["text"] = (f"\n{case.arch} {case.patch}x{case.patch} batch {case.batch} {precision.dtype} channels_last"
                   f"{' compile' if case.compile else ''} on {out['device']}\n"
                   f"  bare loop        {best:9.1f} img/s  {macs_tflops:8.2f} TFLOP/s  MFU {pct(out['bare_mfu'])}"
                   f"  (runs: {', '.join(f'{b:.1f}' for b in bare)})\n"
                   f"  harness step     {fr.train_img_s:9.1f} img/s  {fr.train_tflops:8.2f} TFLOP/s  MFU {pct(fr.mfu)}"
                   f"  ratio {out['ratio']:.3f} (target >= {TARGET})\n"
                   f"  fit loop (wall)  {out['loop_img_s']:9.1f} img/s  (sampling and copy included; "
                   f"{out['loop_img_s'] / best:.3f} of bare)\n"
                   f"  peak memory {fr.peak_mem_mb if fr.peak_mem_mb is None else f'{fr.peak_mem_mb:,.0f} MB'}, "
                   f"compile {fr.compile_s if fr.compile_s is None else f'{fr.compile_s:.1f} s'}")
    return out


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compile"])
def test_gpu_harness_loop_keeps_up_with_a_bare_loop(compiled, capsys):
    out = compare(dataclasses.replace(GPU, compile=compiled), torch.device("cuda"))
    with capsys.disabled():
        print(out["text"])
    assert out["ratio"] >= TARGET, f"harness {out['harness_img_s']:.1f} img/s, bare {out['bare_img_s']:.1f}"


def test_cpu_harness_loop_keeps_up_with_a_bare_loop(capsys):
    torch.set_num_threads(2)
    out = compare(CPU, torch.device("cpu"))
    with capsys.disabled():
        print(out["text"])
    assert out["harness_mfu"] is None and out["harness_tflops"] > 0
    if max(out["bare_runs"]) > 1.2 * min(out["bare_runs"]):  # other processes on the cores
        runs = ", ".join(f"{b:.1f}" for b in out["bare_runs"])
        pytest.skip(f"CPU too busy to compare: the bare loop alone ran at {runs} img/s")
    assert out["ratio"] >= TARGET, f"harness {out['harness_img_s']:.1f} img/s, bare {out['bare_img_s']:.1f}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_gpu_cudnn_autotuning_is_measured_both_ways(capsys):
    """The bare loop of the GPU case with cuDNN autotuning off and on (runs have it on:
    ``execution.CUDNN_BENCHMARK``); on must not be slower."""
    cuda = torch.device("cuda")
    data = load_dataset(DataSpec("membranes", n_images=40, size=GPU.patch, seed=0))
    spec = arch_for_data(variants.parse(GPU.arch), data)
    amp = resolve_precision(GPU.amp, cuda).amp
    old, rates = torch.backends.cudnn.benchmark, {}
    try:
        for flag in (False, True, False, True):  # twice each, alternating: the best of each
            torch.backends.cudnn.benchmark = flag
            rates[flag] = max(rates.get(flag, 0.0), bare_loop(spec, data, GPU, cuda, amp))
    finally:
        torch.backends.cudnn.benchmark = old
    with capsys.disabled():
        print(f"\ncuDNN autotuning, bare loop of {GPU.arch} {GPU.patch}x{GPU.patch} batch {GPU.batch} {GPU.amp}: "
              f"off {rates[False]:.1f} img/s, on {rates[True]:.1f} img/s ({rates[True] / rates[False]:.3f}x)")
    assert rates[True] >= 0.97 * rates[False]


def test_tensorboard_logging_costs_under_2_percent_of_a_step(tmp_path, capsys):
    """`--tensorboard` logs loss, rate and img/s every 10 steps: their cost per step against
    the CPU case's step (a GPU step of the gpu preset is ~7 ms: printed against that too)."""
    from harness.training.monitor import TensorBoard

    torch.set_num_threads(2)
    data = load_dataset(DataSpec("membranes", n_images=40, size=128, seed=0))
    spec = arch_for_data(variants.parse(CPU.arch), data)
    cpu = torch.device("cpu")
    step_s = CPU.batch / bare_loop(spec, data, CPU, cpu, resolve_precision("none", cpu).amp)
    board = TensorBoard(tmp_path)
    n = 3000
    t0 = time.perf_counter()
    for i in range(n):
        board.step(i, 0.5, 1e-3, 100.0)
    per_step = (time.perf_counter() - t0) / n
    board.close()
    with capsys.disabled():
        print(f"\nTensorBoard: {per_step * 1e6:.1f} us per step against a {step_s * 1e3:.1f} ms step "
              f"({per_step / step_s:.3%}; {per_step / 7e-3:.2%} of a 7 ms GPU step)")
    assert per_step / step_s < 0.02 and per_step < 0.02 * 7e-3
