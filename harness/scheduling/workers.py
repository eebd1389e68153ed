"""Runs in local worker processes (``--workers N``): each its own process ("spawn": no
state shared), its share of the CPU threads or its own GPU, the parent's log level, and
Ctrl-C stopping its run (claim released, checkpoint kept) while runs not yet started are
left alone."""
from __future__ import annotations

import _thread
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch

from .. import log_to_stderr
from ..spec.sweep import Sweep
from ..training.execution import resolve_device
from .one_run import run_key

log = logging.getLogger("unet_ablate")

PARENT_POLL_S = 0.5  # how often a worker looks whether its parent still lives
_stopping = False  # in a worker: Ctrl-C was pressed; runs not yet started are left alone
_running = False   # in a worker: a run is in progress


def _on_interrupt(signum, frame):
    """Ctrl-C or SIGTERM in a worker stops its run (once: a second must not break the
    clean-up of the first), and leaves an idle worker to end quietly."""
    global _stopping
    if not _stopping:
        _stopping = True
        if _running:
            raise KeyboardInterrupt


def _watch_parent(parent: int, poll_s: float = PARENT_POLL_S) -> None:
    """End this worker when its parent ends, however it ended (kill -9 included): the run
    in progress stops as on Ctrl-C (claim released, checkpoint kept), then the process
    exits; an idle worker exits at once. Without this, orphaned workers would go on with
    the queue, then block on the dead parent's pipe."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    if _running:
        _thread.interrupt_main()  # as Ctrl-C: _on_interrupt raises in the run, which cleans up
        deadline = time.monotonic() + 120
        while _running and time.monotonic() < deadline:
            time.sleep(0.05)
    os._exit(1)


def _start_worker(ids, gpus: list[str], level: int) -> None:
    """A worker process: its own GPU (``CUDA_VISIBLE_DEVICES``) when there are several,
    the parent's log level, Ctrl-C and SIGTERM stopping its run (claim released, checkpoint
    kept), and a watch on its parent, whose end ends it."""
    i = ids.get()
    if len(gpus) > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
    log_to_stderr(level)
    signal.signal(signal.SIGINT, _on_interrupt)
    signal.signal(signal.SIGTERM, _on_interrupt)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True, name="watch-parent").start()


def _worker_run(sweep: Sweep, out: Path, key: str, dataset: str, retry_failed: bool, seen: int | None,
                threads: int) -> tuple[str, str | None, str | None]:
    """``one_run.run_key`` in a worker, unless Ctrl-C has been pressed: (outcome, status, error)."""
    global _running
    if _stopping:
        return "stopped", None, None
    _running = True
    try:
        return run_key(sweep, out, key, dataset, retry_failed, seen, threads)
    finally:
        _running = False


def visible_gpus(device: str) -> list[str]:
    """The GPUs workers can be given one each: the ids of ``CUDA_VISIBLE_DEVICES``, else
    0..n-1; none on CPU."""
    if resolve_device(device).type != "cuda":
        return []
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    return [g for g in given.split(",") if g] if given else [str(i) for i in range(torch.cuda.device_count())]


def check_gpu_sharing(device: str, workers: int) -> None:
    """Refuse ``workers`` local processes on fewer GPUs: runs sharing one GPU would time each
    other's kernels, so their img/s, latency and MFU would be wrong (one line, before
    anything is written)."""
    gpus = visible_gpus(device) if workers > 1 else []
    if gpus and workers > len(gpus):
        raise ValueError(f"--workers {workers}: only {len(gpus)} GPU(s) visible ({','.join(gpus)}); runs sharing a "
                         f"GPU would corrupt each other's img/s, latency and MFU: use at most {len(gpus)} worker(s)")


def worker_threads(measure_threads: int, workers: int) -> int:
    """The CPU threads of each of ``workers`` processes: the sweep's, split between them."""
    return max(1, measure_threads // workers)


def run_in_workers(sweep: Sweep, out: Path, todo: list, workers: int, retry_failed: bool):
    """Run ``todo`` in ``workers`` processes ("spawn": no state shared with this one);
    yields (index in todo, outcome, status, error) as runs end."""
    ctx = multiprocessing.get_context("spawn")
    ids = ctx.Queue()
    for i in range(workers):
        ids.put(i)
    threads = worker_threads(sweep.measure.threads, workers)
    gpus = visible_gpus(sweep.measure.device)
    log.info("%d workers, %s", workers, f"one GPU each of {','.join(gpus)}" if len(gpus) > 1
             else f"{threads} CPU thread(s) each")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                               initargs=(ids, gpus, log.getEffectiveLevel()))
    try:
        futures = {pool.submit(_worker_run, sweep, out, run.key, run.labels.dataset, retry_failed, run.seen,
                               threads): i
                   for i, run in enumerate(todo)}
        for f in as_completed(futures):
            yield (futures[f], *f.result())
    except BrokenProcessPool:
        raise ValueError(f"a worker process died (killed, or out of memory?); the records written so far in "
                         f"{out} are whole: the same command goes on from there") from None
    except BaseException:  # Ctrl-C or SIGTERM to this process alone, or an error: stop the workers' runs
        _interrupt(pool)
        raise
    finally:  # start nothing more
        pool.shutdown(wait=True, cancel_futures=True)


def _interrupt(pool: ProcessPoolExecutor) -> None:
    """Ctrl-C to every worker: its run stops (claim released, checkpoint kept) and the runs
    queued to it return at once. A terminal's Ctrl-C reaches them already; a SIGINT or
    SIGTERM to the parent alone would not."""
    for process in list((pool._processes or {}).values()):  # (no public list of a pool's processes)
        with contextlib.suppress(ProcessLookupError, AttributeError, TypeError):
            os.kill(process.pid, signal.SIGINT)
