"""HOW the variants are compared: data, training, scoring, measurement, sweeps, the results
store, reports and the command line. One owner per concept:

  protocol   RunSpec = arch + data + protocol + measure + seed; its key
  choices    registries by name: optimizers, schedules, losses, precisions
  config     the one rule for reading config tables (unknown keys, integers, numbers)
  fileio     the atomic writer (umask, failures name the file), canonical-JSON keys
  data/      DataSpec, built-in and folder data sets, the seeded split
  train      ``fit``: patches, loss, optimizer, schedule, model selection
  evaluate   whole-image prediction (overlap-tile) and per-image confusion counts
  metrics    every metric (``METRICS``): from counts and from whole maps; ``IGNORE``
  cost       parameters, MACs (FlopCounterMode, thop cross-check); the MAC convention
  measure    throughput, latency, memory and the environment
  records    the run record (schema, build, validate, read), sweep.json, samples, runs.csv
  runner     ``run_one`` and ``run_sweep`` (resumable): here, in worker processes, or as jobs
  claims     who runs which run: atomic claims with a heartbeat, stale ones taken over
  cluster    submitit jobs (``--launcher slurm|local``), requeued on preemption
  sweep      sweep files (TOML) expanded into variants
  report/    tables and figures from a results folder (reads nothing but the results store)
  cli        ``unet-ablate list | profile | run | report``, logging, the console summary
"""
import logging
import sys


def log_to_stderr(level: int) -> None:
    """The harness's log ("unet_ablate") on stderr at ``level``, one "unet-ablate: ..." line
    per message: the command line's, and a worker process's or cluster job's (into its log)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("unet-ablate: %(message)s"))
    log = logging.getLogger("unet_ablate")
    log.handlers[:] = [handler]
    log.setLevel(level)
