"""What produced a record's numbers (``environment``: device, threads, precision, the
versions of every package that computes one, the CUDA stack and its settings, the git
commit), and, for reports and reruns, what differs between the environments of records
(``env_mix``): a version is not part of a run key, so records of other versions are reused,
but never silently."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


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
        root = Path(__file__).resolve().parents[2]  # the checkout: harness/store/ is two below it
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
    import torchvision

    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "dtype": dtype,
        "memory_format": "channels_last" if channels_last else "contiguous",
        **current_versions(),
        "torchvision": torchvision.__version__,
        "submitit": package_version("submitit") if os.environ.get("SUBMITIT_EXECUTOR") else None,
        "cuda": cuda_settings() if device.type == "cuda" else None,
        "platform": platform.platform(),
    }


# The fields of ``env`` that can change a record's numbers, in the order a report names them
# ("torch 2.14.1 (24 runs) and 2.15.0 (3 runs)"): device, threads, Python, every package that
# computes a number, the CUDA stack and the code itself. dtype and memory format are part of
# the run key (the protocol), so they never differ between records of one run.
ENV_FIELDS = ("device_name", "threads", "python", "torch", "torchvision", "smp", "numpy", "scipy",
              "scikit-image", "monai", "pandas", "thop", "tifffile", "pillow", "submitit",
              "cuda.runtime", "cuda.cudnn", "cuda.driver", "cuda.tf32_matmul", "cuda.tf32_cudnn",
              "cuda.cudnn_benchmark", "cuda.deterministic_algorithms", "git_commit")
_ENV_LABELS = {"device_name": "device", "cuda.runtime": "CUDA", "cuda.cudnn": "cuDNN",
               "cuda.driver": "driver", "cuda.tf32_matmul": "TF32 matmul", "cuda.tf32_cudnn": "TF32 cuDNN",
               "cuda.cudnn_benchmark": "cudnn.benchmark",
               "cuda.deterministic_algorithms": "deterministic algorithms", "git_commit": "git commit"}


def env_value(env: Mapping[str, Any], field: str) -> Any:
    """``env[field]``, ``cuda.x`` read inside ``env["cuda"]`` (None: not recorded)."""
    if field.startswith("cuda."):
        return (env.get("cuda") or {}).get(field[5:])
    return env.get(field)


def env_mix(envs: Sequence[Mapping[str, Any]]) -> str:
    """"" when every env agrees on ``ENV_FIELDS``; else one clause per field that differs,
    each value with its number of runs, most runs first: "torch 2.14.1 (24 runs) and 2.15.0
    (3 runs); threads 2 (20 runs) and 4 (7 runs)". A field a record lacks (written before it
    was recorded) counts as "unrecorded"; a field no record holds is left out."""
    clauses = []
    for field in ENV_FIELDS:
        values = [env_value(e, field) for e in envs]
        if all(v is None for v in values) or len(set(map(str, values))) == 1:
            continue
        counts: dict[str, int] = {}
        for v in values:
            text = (("not used" if field == "submitit" else "unrecorded") if v is None
                    else str(v)[:10] if field == "git_commit" else str(v))
            counts[text] = counts.get(text, 0) + 1
        parts = [f"{v} ({n} run{'s' * (n != 1)})"
                 for v, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
        clauses.append(f"{_ENV_LABELS.get(field, field)} " + (", ".join(parts[:-1]) + " and " + parts[-1]))
    return "; ".join(clauses)
