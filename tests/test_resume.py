"""Runs that survive their process: a killed run resumed from its in-run checkpoint, a
preempted cluster job (submitit's local executor) requeued, Ctrl-C and signals to a
``--workers`` parent. Each starts processes that import torch (seconds each), so they live
apart from the claim tests (tests/test_parallel.py) and run beside them."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_parallel import ROOT, assert_clean, by_key, counts, run, write_sweep

from harness.spec.protocol import Protocol, RunSpec
from harness.store.layout import Layout


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def long_sweep(folder: Path, checkpoint_every: int) -> Path:
    """The baseline and a wider U-Net, one seed, 200 steps: long enough to stop mid-training."""
    folder.mkdir(exist_ok=True)
    return write_sweep(folder, seeds=1,
                       protocol={"steps": 200, "eval_every": 50, "checkpoint_every": checkpoint_every or None},
                       variants={"one_factor": None, "explicit": {"wide": "unet-w8-d2"}})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The long sweep run without interruption nor checkpoints: its records by key."""
    root = tmp_path_factory.mktemp("uninterrupted")
    assert run(long_sweep(root, 0), "--out", root / "out", "-q") == 0
    return by_key(root / "out")


def assert_same_training(recs: dict, want: dict):
    untimed = lambda h: [{k: v for k, v in e.items() if k != "elapsed_s"} for e in h]  # noqa: E731
    assert set(recs) == set(want)  # checkpoint_every is not in the key
    for k in want:
        assert counts(recs[k]) == counts(want[k])
        assert untimed(recs[k]["train"]["history"]) == untimed(want[k]["train"]["history"])
        assert recs[k]["spec"]["protocol"]["checkpoint_every"] == 10


def test_a_preempted_local_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path, uninterrupted):
    """SIGUSR2 is what SLURM sends before preempting a job (and before its time limit):
    submitit calls RunJob.checkpoint, requeues the job, and the run resumes from its
    in-run checkpoint, to the counts of an uninterrupted run."""
    from harness.scheduling import cluster
    from harness.scheduling.dispatch import submit_sweep
    from harness.spec.sweep import load_sweep

    out = tmp_path / "out"
    sweep = load_sweep(str(long_sweep(tmp_path, 10)))
    jobs = submit_sweep(dataclasses.replace(sweep, variants=sweep.variants[:1]), out, "local")
    assert len(jobs) == 1
    deadline = time.monotonic() + 120
    while not jobs[0].done() and time.monotonic() < deadline and not list((out / "checkpoints").glob("*.pt")):
        time.sleep(0.01)
    task = _children(int(jobs[0].job_id))
    assert len(task) == 1 and list((out / "checkpoints").glob("*.pt")), "preempt it while it trains"
    os.kill(task[0], signal.SIGUSR2)
    assert [r[1:3] for r in cluster.wait(jobs, 0.2)] == [("ran", "ok")]
    log = Path(jobs[0].paths.stderr).read_text()
    assert "preempted" in log and "resuming training at step" in log, log
    want = {k: r for k, r in uninterrupted.items() if r["variant"] == "baseline"}
    assert_same_training(by_key(out), want)
    assert_clean(out)


# --------------------------------------------------------------------------- checkpoints

def test_checkpoint_every_is_not_part_of_the_run_key():
    off = RunSpec(arch={}, data={})
    on = RunSpec(arch={}, data={}, protocol=Protocol(checkpoint_every=50))
    assert on.key == off.key == "be493e4453e30d70"
    assert on.to_dict()["protocol"]["checkpoint_every"] == 50  # the record's spec keeps it


def test_a_run_killed_mid_training_resumes_from_its_checkpoint_to_the_same_counts(tmp_path, capsys,
                                                                                  uninterrupted):
    """`unet-ablate run` killed (SIGKILL) once a run has saved a checkpoint; the same
    command resumes it there (its claim, of a dead process, is taken over at once) and
    ends with the counts, history and key of a run never interrupted nor checkpointed."""
    sweep, out = long_sweep(tmp_path, 10), tmp_path / "out"
    cmd = [sys.executable, "-m", "harness", "run", str(sweep), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not list((out / "checkpoints").glob("*.pt")):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = list((out / "checkpoints").glob("*.pt"))
    assert len(saved) == 1, "the kill should land after the first checkpoint of a run"
    killed = saved[0].stem
    assert not Layout(out).record(killed).exists()
    assert Layout(out).claim(killed).exists()  # left by the killed process

    capsys.readouterr()
    assert run(sweep, "--out", out) == 0
    err = capsys.readouterr().err
    assert "resuming training at step " in err and str(saved[0]) in err, err
    step = int(err.split("resuming training at step ")[1].split()[0])
    assert 10 <= step < 200 and step % 10 == 0
    assert_same_training(by_key(out), uninterrupted)
    assert_clean(out)


def test_ctrl_c_stops_the_workers_and_keeps_their_checkpoints(tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) with --workers 2: one
    line, exit 130, every claim released, no further run started, the checkpoints kept."""
    sweep, out = long_sweep(tmp_path, 10), tmp_path / "out"
    cmd = [sys.executable, "-m", "harness", "run", str(sweep), "--out", str(out), "--no-progress",
           "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and len(list((out / "checkpoints").glob("*.pt"))) < 2:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.endswith("unet-ablate: interrupted\n"), err
    assert "Traceback" not in err
    assert len(list((out / "checkpoints").glob("*.pt"))) == 2
    assert not list((out / "claims").iterdir()) and not (out / "runs").exists()
    assert not list(out.rglob("*.tmp"))


def _gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for its parent counts as ended)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow),
                                 signal.SIGKILL])  # SIGINT: the SIGTERM path (one handler); make test-all
def test_workers_end_with_their_parent_and_no_queued_run_starts(tmp_path, sig):
    """A signal to the --workers parent alone (not its process group): SIGTERM and SIGINT end
    the runs as Ctrl-C does; after kill -9 the orphaned workers notice and end too. No
    worker is left running, no queued run starts, every claim is released."""
    sweep, out = long_sweep(tmp_path, 10), tmp_path / "out"
    sweep.write_text(sweep.read_text().replace("seeds = 1", "seeds = 2"))  # 4 runs for 2 workers
    cmd = [sys.executable, "-m", "harness", "run", str(sweep), "--out", str(out), "--no-progress", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and len(list((out / "checkpoints").glob("*.pt"))) < 2:
        time.sleep(0.01)
    workers = [json.loads(p.read_text())["pid"] for p in (out / "claims").glob("*.json")]
    assert len(workers) == 2 and proc.pid not in workers
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    if sig != signal.SIGKILL:
        assert proc.returncode == 130 and err.endswith("unet-ablate: interrupted\n") and "Traceback" not in err, err
    deadline = time.monotonic() + 30
    while not all(map(_gone, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(map(_gone, workers)), "a worker outlived its parent"
    assert not list((out / "claims").iterdir())
    assert not (out / "runs").exists() or not list((out / "runs").glob("*.json"))
