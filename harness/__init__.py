"""HOW the variants are compared, one package per stage of the pipeline, in order (each
imports only the stages above it and the helpers; tests/test_layers.py checks it):

  data/        data sets: built-in synthetic sets, folders, the seeded split and folds
  spec/        what a sweep asks: sweep files, RunSpec and its key, choices, designs, settings
  store/       the results folder: layout, run records, sweep.json, samples, runs.csv, environment
  training/    one run's work: execution, the loop, prediction, scoring, cost, measurement
  scheduling/  who runs what and when: planned runs, one run, runners, workers, cluster, claims
  report/      tables, figures and verdicts, from the store alone
  sweeps/      the preset sweep files (TOML)

and at the top, the command line and the lowest helpers:

  cli       ``unet-ablate list | profile | plan | run | status | report``, logging, errors
  __main__  ``python -m harness``
  config    the one rule for reading config tables (unknown keys, integers, numbers, names)
  fileio    the atomic writer (umask, failures name the file), canonical-JSON keys
  metrics   every metric (``METRICS``): from counts and from whole maps; ``IGNORE``
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
