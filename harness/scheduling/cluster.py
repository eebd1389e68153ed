"""Cluster jobs through submitit: ``unet-ablate run SWEEP --launcher slurm|local``.

Each run that has no record becomes one job of a job array (SLURM), or one local process
(``local``: submitit's local executor, the same path without SLURM, which is how the tests
exercise it). A job calls ``one_run.run_key``, the path every runner takes: claim the run,
train it (resuming from its in-run checkpoint when there is one), write its record
atomically, remove the checkpoint, release the claim. A job that SLURM preempts or stops
at its time limit is requeued by submitit (``RunJob.checkpoint``) and resumes from the
run's last checkpoint. The jobs' settings come from the sweep's ``[launcher]`` table
(``sweep.Launcher``) and the command line; their logs go to ``OUT/submitit/``.

submitit is an optional extra: ``pip install unet-ablate[cluster]``.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from .. import log_to_stderr
from ..store.layout import Layout
from .one_run import run_key

log = logging.getLogger("unet_ablate")

LAUNCHERS = ("slurm", "local")
INSTALL = "--launcher needs submitit: pip install unet-ablate[cluster]"
POLL_S = {"slurm": 15.0, "local": 0.5}  # how often `run` looks at its jobs while it waits


def check_available(launcher: str = "local") -> None:
    """A one-line ValueError when submitit is not installed, or SLURM is not at hand."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ValueError(INSTALL) from None
    if launcher == "slurm" and shutil.which("sbatch") is None:
        raise ValueError("--launcher slurm needs SLURM: no sbatch on this machine's PATH (run it on a "
                         "login node of the cluster; --launcher local runs the same jobs here)")


class RunJob:
    """One job: run ``key`` of ``sweep`` into ``out``. submitit pickles it; ``checkpoint``
    is what submitit calls when the job is preempted or reaches its time limit: the job is
    requeued as it is, and the run resumes from its in-run checkpoint."""

    def __init__(self, sweep, out: Path, key: str, dataset: str, threads: int, retry_failed: bool,
                 seen: int | None):
        self.sweep, self.out, self.key, self.dataset = sweep, Path(out), key, dataset
        self.threads, self.retry_failed, self.seen = threads, retry_failed, seen

    def __call__(self) -> tuple[str, str | None, str | None]:
        log_to_stderr(logging.INFO)  # into the job's log file
        return run_key(self.sweep, self.out, self.key, self.dataset, self.retry_failed, self.seen,
                       self.threads)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def executor(out: Path, sweep, launcher: str):
    """A submitit executor for ``launcher`` with the sweep's [launcher] settings."""
    import submitit

    s = sweep.launcher
    gpus = s.gpus_per_task if s.gpus_per_task is not None else int(sweep.measure.device == "cuda")
    ex = submitit.AutoExecutor(folder=Layout(out).submitit, cluster=launcher)
    params = {"name": f"unet-ablate-{sweep.name}", "timeout_min": s.timeout_min, "tasks_per_node": 1,
              "nodes": 1, "gpus_per_node": gpus or None, "cpus_per_task": s.cpus_per_task,
              "mem_gb": s.mem_gb, "slurm_partition": s.partition,
              "slurm_array_parallelism": s.array_parallelism,
              "slurm_additional_parameters": dict(s.additional_parameters) or None,
              "slurm_setup": list(s.setup) or None}
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def submit(sweep, out: Path, todo: list, launcher: str, retry_failed: bool = False) -> list:
    """One job per planned run of ``todo`` (``planning.PlannedRun``, with the ``seen`` of its
    record), submitted as one array; the jobs, in the order of ``todo``."""
    check_available(launcher)
    threads = sweep.launcher.cpus_per_task or sweep.measure.threads
    jobs = [RunJob(sweep, out, run.key, run.labels.dataset, threads, retry_failed, run.seen) for run in todo]
    try:
        return executor(out, sweep, launcher).submit_array(jobs)
    except Exception as e:  # noqa: BLE001 - sbatch missing or refusing: one line, not a traceback
        what = str(e).strip().splitlines()
        raise ValueError(f"--launcher {launcher}: the jobs were not submitted: "
                         f"{what[-1] if what else e.__class__.__name__}") from None


def wait(jobs: list, poll_s: float = POLL_S["local"]):
    """Wait for every job to end; yields (index in ``jobs``, outcome, status, error) as each
    ends. A job that ended without a result (killed, out of memory, requeued too often)
    yields outcome ``lost`` with the last line of its error and where its log is."""
    pending = dict(enumerate(jobs))
    try:
        while pending:
            for i, job in list(pending.items()):
                if not job.done():
                    continue
                del pending[i]
                try:
                    yield (i, *job.result())
                except Exception as e:  # noqa: BLE001 - the job's failure, not ours
                    lines = str(e).strip().splitlines()
                    yield (i, "lost", None, f"job {job.job_id} ended without a record "
                           f"({lines[-1] if lines else e.__class__.__name__}); its log: {job.paths.stderr}")
            if pending:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        log.warning("stopped waiting; the %d job(s) left go on (`unet-ablate report` works at any time, "
                    "`scancel` stops SLURM jobs)", len(pending))
        raise
