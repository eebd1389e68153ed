"""A fully recorded sweep reruns at the cost of starting the program (`make bench`).

Side by side in one run: `unet-ablate --help` (the import floor: Python, torch, pandas) and
`unet-ablate run smoke` on a folder where every run is recorded. The rerun may take at most
1.3x the floor plus 0.5 s: no model is built or tried on meta, no data set is generated."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _seconds(*args, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return min(times)


@pytest.mark.slow
def test_a_recorded_rerun_costs_about_the_start_up(tmp_path):
    out = tmp_path / "smoke"
    subprocess.run([sys.executable, "-m", "harness", "run", "smoke", "--out", str(out), "-q", "--no-progress"],
                   cwd=ROOT, check=True, capture_output=True)
    floor = _seconds("--help")
    rerun = _seconds("run", "smoke", "--out", str(out), "-q", "--no-progress")
    print(f"\nstart-up (--help) {floor:.2f} s, recorded smoke rerun {rerun:.2f} s, ratio {rerun / floor:.2f}")
    assert rerun <= 1.3 * floor + 0.5
