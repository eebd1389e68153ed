"""Run-time cost: inference throughput and latency (median and spread after warm-up),
peak GPU memory, achieved training FLOP/s and model FLOP utilisation (MFU), and the
environment every figure depends on.

CPU timing uses ``torch.utils.benchmark`` with a fixed thread count; GPU timing uses CUDA
events around each call and a synchronize."""
from __future__ import annotations

import functools
import logging
import os
import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import torch

from .execution import Execution
from .protocol import Measure

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
    (``torch.cuda.get_device_name()``); None for a device the table does not know."""
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
    executes (``ex``: device, precision, memory format)."""
    model.eval()
    device = ex.device
    out = {}
    for batch in (measure.batch_size, 1):
        x = torch.randn(batch, in_channels, *input_hw, device=device).contiguous(memory_format=ex.memory_format)

        def call(x=x):
            with ex.amp():
                return model(x)

        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        med, p25, p75 = time_call(call, device, measure)
        if batch == measure.batch_size:
            out.update(infer_img_s=batch / med, infer_img_s_iqr=batch / p25 - batch / p75, infer_batch=batch)
            if device.type == "cuda":
                out["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        if batch == 1:
            out.update(latency_ms=med * 1000, latency_ms_iqr=(p75 - p25) * 1000)
    out.setdefault("peak_mem_mb", None)
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# The packages whose code computes a number of a record (besides torch, torchvision, smp and
# numpy, which records have named since schema 2), by distribution name: metrics (scipy,
# scikit-image, monai), images read (tifffile, pillow), tables (pandas), the MAC cross-check.
PACKAGES = ("scipy", "scikit-image", "monai", "pandas", "thop", "tifffile", "pillow")


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``; None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _cuda_driver() -> str | None:
    """The NVIDIA driver's version (nvidia-smi, as ``torch.utils.collect_env`` reads it)."""
    from torch.utils import collect_env

    try:
        return collect_env.get_nvidia_driver_version(collect_env.run)
    except Exception:  # noqa: BLE001 - unknown is recorded as unknown, never a failed run
        return None


def cuda_settings() -> dict:
    """What decides a CUDA run's numbers besides the code: the CUDA runtime torch was built
    with, cuDNN, the driver, and the TF32, autotuning and determinism settings in force."""
    return {
        "runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "driver": _cuda_driver(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }


def current_versions() -> dict:
    """The fields of ``environment`` that this process can tell without a device or
    importing more: Python, the packages and the git commit (to compare with records)."""
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "smp": package_version("segmentation-models-pytorch"),
            **{name: package_version(name) for name in PACKAGES}, "git_commit": _git_commit()}


def environment(device: torch.device, threads: int, dtype: str, channels_last: bool) -> dict:
    """What produced a record's numbers: device, threads, precision, the versions of every
    package that computes one (``PACKAGES``; ``submitit`` when a submitit job runs it), the
    CUDA settings on a GPU (``cuda``; null on the CPU) and the git commit."""
    import segmentation_models_pytorch as smp
    import torchvision

    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "dtype": dtype,
        "memory_format": "channels_last" if channels_last else "contiguous",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "smp": smp.__version__,
        "numpy": np.__version__,
        **{name: package_version(name) for name in PACKAGES},
        "submitit": package_version("submitit") if os.environ.get("SUBMITIT_EXECUTOR") else None,
        "cuda": cuda_settings() if device.type == "cuda" else None,
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }
