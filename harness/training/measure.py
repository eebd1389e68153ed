"""Run-time cost: inference throughput and latency (median and spread after warm-up),
peak GPU memory, achieved training FLOP/s and model FLOP utilisation (MFU). What
environment they were measured in is ``harness.store.environment``'s.

CPU timing uses ``torch.utils.benchmark`` with a fixed thread count; GPU timing uses CUDA
events around each call and a synchronize."""
from __future__ import annotations

import logging
import re

import numpy as np
import torch

from ..spec.protocol import Measure
from .execution import Execution

# --------------------------------------------------------------------------- training FLOP/s, MFU

# Dense (no 2:4 sparsity) bf16 tensor-core peak of known GPUs, in TFLOP/s, from the vendor's
# data sheets (for SXM/HGX parts, the SXM figure). Matched in this order against
# torch.cuda.get_device_name(), case-insensitively, whole words: "H100 PCIe" before "H100",
# "L40S" before "L40", and "A10" never matches "A100" or "A10G".
PEAK_BF16_TFLOPS: tuple[tuple[str, float, str], ...] = (
    (r"GH200", 989.0, "GH200 (Hopper, as H100 SXM)"),
    (r"H200 NVL", 835.0, "H200 NVL"),
    (r"H200", 989.0, "H200 SXM"),
    (r"H100 NVL", 835.0, "H100 NVL"),
    (r"H100 PCIe", 756.0, "H100 PCIe"),
    (r"H100", 989.0, "H100 SXM (e.g. 'NVIDIA H100 80GB HBM3')"),
    (r"A100", 312.0, "A100 (SXM and PCIe)"),
    (r"L40S", 362.0, "L40S"),
    (r"L40", 181.0, "L40"),
    (r"L4", 121.0, "L4"),
    (r"A10", 125.0, "A10"),
    (r"RTX 4090(?! D)", 165.0, "GeForce RTX 4090 (bf16 with fp32 accumulate)"),
    (r"V100-PCIE", 112.0, "V100 PCIe: fp16 tensor-core peak (V100 has no bf16 tensor cores)"),
    (r"V100", 125.0, "V100 SXM2: fp16 tensor-core peak (V100 has no bf16 tensor cores)"),
)


def peak_bf16_tflops(device_name: str | None) -> float | None:
    """The dense bf16 peak (TFLOP/s) of a GPU named ``device_name``
    (``torch.cuda.get_device_name()``); None for a device the table does not know, and for
    a MIG slice ("NVIDIA H100 80GB HBM3 MIG 1g.10gb"): it holds a fraction of the GPU's
    compute, so the whole GPU's peak would understate its MFU several times over."""
    if device_name and re.search(r"\bMIG\b", device_name, re.IGNORECASE):
        return None
    for pattern, tflops, _ in PEAK_BF16_TFLOPS:
        if device_name and re.search(rf"(?<![\w-]){pattern}(?![\w])", device_name, re.IGNORECASE):
            return tflops
    return None


def device_peak_tflops(device: torch.device) -> float | None:
    """The dense bf16 peak of ``device``; None on CPU and on an unknown GPU."""
    if device.type != "cuda":
        return None
    return peak_bf16_tflops(torch.cuda.get_device_name(device))


def train_tflops(macs_per_image: int | float, img_s: float) -> float:
    """Achieved training TFLOP/s: forward 2 x MACs per image, backward twice the forward,
    so 3 x 2 x MACs x images/s (MACs of the training input, ``cost.count_macs``)."""
    return 3 * 2 * macs_per_image * img_s / 1e12


def mfu(tflops: float | None, peak: float | None) -> float | None:
    """Model FLOP utilisation: achieved over peak TFLOP/s; None where either is unknown."""
    return None if tflops is None or not peak else tflops / peak


# --------------------------------------------------------------------------- timing

def _times_cpu(fn, measure: Measure) -> np.ndarray:
    # torch.utils.benchmark imports cpp_extension, which warns when CUDA_HOME has no runtime
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import benchmark

    for _ in range(measure.warmup):
        fn()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=measure.threads)
    m = timer.blocked_autorange(min_run_time=measure.min_run_time)
    return np.asarray(m.times)


def _times_cuda(fn, measure: Measure) -> np.ndarray:
    for _ in range(max(measure.warmup, 1)):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(measure.repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return np.asarray(times)


def time_call(fn, device: torch.device, measure: Measure) -> tuple[float, float, float]:
    """(median, 25th, 75th percentile) seconds per call."""
    t = _times_cuda(fn, measure) if device.type == "cuda" else _times_cpu(fn, measure)
    return float(np.median(t)), float(np.percentile(t, 25)), float(np.percentile(t, 75))


@torch.no_grad()
def inference_cost(model, in_channels: int, input_hw: tuple[int, int], ex: Execution,
                   measure: Measure) -> dict:
    """Images/s at ``measure.batch_size`` and latency at batch 1 for an input of
    ``input_hw`` (the input that predicts one image of the stated resolution), as the run
    executes (``ex``: device, precision, memory format). The input is made on the device
    before timing: host-device copies are not in these figures. Each batch size is timed
    inside one autocast region, so its weights are cast to the compute dtype once, not on
    every call. ``peak_mem_mb`` (CUDA) is the rise of allocated memory over what was held
    before the batch's calls (the model's weights, the test's tensors): what inference adds."""
    model.eval()
    device = ex.device
    out = {}
    for batch in (measure.batch_size, 1):
        x = torch.randn(batch, in_channels, *input_hw, device=device).contiguous(memory_format=ex.memory_format)
        held = 0
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            held = torch.cuda.memory_allocated(device)
        with ex.amp():
            med, p25, p75 = time_call(lambda x=x: model(x), device, measure)
        if batch == measure.batch_size:
            out.update(infer_img_s=batch / med, infer_img_s_iqr=batch / p25 - batch / p75, infer_batch=batch)
            if device.type == "cuda":
                out["peak_mem_mb"] = (torch.cuda.max_memory_allocated(device) - held) / 2**20
        if batch == 1:
            out.update(latency_ms=med * 1000, latency_ms_iqr=(p75 - p25) * 1000)
    out.setdefault("peak_mem_mb", None)
    return out
