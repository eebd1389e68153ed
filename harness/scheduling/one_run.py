"""One run: ``run_one`` trains, scores on the test split once and measures one planned run
and returns its record; ``run_claimed`` is the one path every runner takes for it (claim,
run, write the record atomically, remove the in-run checkpoint, release the claim), and
``run_key`` runs one run of a sweep by its key, as a worker process or a cluster job does.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import sys
import time
import traceback
from pathlib import Path

import torch

import variants

from ..spec.protocol import RunSpec
from ..spec.sweep import Sweep
from ..store import records
from ..store.environment import environment
from ..store.layout import Layout
from ..training.cost import count_macs, count_params
from ..training.evaluate import foreground_classes, image_scores, metric_workers, score
from ..training.execution import Execution
from ..training.measure import inference_cost
from ..training.monitor import open_board, run_folder
from ..training.predict import predict_classes
from ..training.train import discard_checkpoint, fit
from . import claims
from .planning import PlannedRun, planned_run

log = logging.getLogger("unet_ablate")


def progress_bar(total: int, desc: str, enabled: bool, **kw):
    if not enabled:
        return contextlib.nullcontext()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, dynamic_ncols=True, file=sys.stderr, **kw)


def _form_model(model, spec, form: str, ex: Execution):
    """The network of one inference form, in the memory format the run trained in."""
    if form == "mean":
        return model, spec
    fspec = spec.replace(form=form)
    return ex.place(model.pruned(fspec.form_column)), fspec


def _test_forms(record: dict, model, spec, data, rs: RunSpec, ex: Execution) -> None:
    """Score every inference form of the trained ``model`` on the test split once, and
    measure its cost, into ``record``."""
    test_x, test_y, test_ids = data.subset("test")
    h, w = rs.measure.size
    measure = dataclasses.replace(rs.measure, threads=ex.threads)
    for form in spec.forms:
        fmodel, fspec = _form_model(model, spec, form, ex)
        preds = predict_classes(fmodel, fspec, test_x, ex)
        in_hw = (variants.input_geometry(fspec, h)[0], variants.input_geometry(fspec, w)[0])
        cost = {"params": count_params(fmodel), "macs": count_macs(fspec, *in_hw),
                "macs_size": [h, w], "input_size": list(in_hw),
                **inference_cost(fmodel, spec.in_channels, in_hw, ex, measure)}
        counts = score(preds, test_y, data.num_classes)
        records.add_form(record, form, counts, foreground_classes(data.num_classes), test_ids, cost,
                         preds, keep=rs.measure.keep_predictions,
                         image_metrics=image_scores(preds, test_y, data.num_classes, counts, metric_workers(ex)))


ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.EIO, errno.EROFS}


def failure_cause(e: BaseException) -> str:
    """"environment" when the machine failed the run (a full disk or quota, out of memory on
    the host or the GPU, an I/O error), so that the same run may well succeed on a rerun
    (``--retry-failed``); "run" otherwise."""
    for err in (e, e.__cause__, e.__context__):
        if isinstance(err, (MemoryError, torch.cuda.OutOfMemoryError)):
            return "environment"
        if isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS:
            return "environment"
    text = str(e).lower()
    return "environment" if "out of memory" in text or "no space left" in text else "run"


def run_one(rs: RunSpec, data, labels: records.Labels | None = None, progress: bool = False,
            out: Path | None = None, threads: int | None = None, tensorboard: Path | None = None) -> dict:
    """Train, score on the test split once, and measure one run. Never raises for a run
    that fails: the exception text goes into the record with status ``failed``.
    ``out``: the results folder, where the run keeps its in-run checkpoint when
    ``protocol.checkpoint_every`` is on (and resumes from one found there). ``threads``:
    the CPU threads to use instead of ``measure.threads`` (parallel workers split them);
    the record's ``env.threads`` says what was used. ``tensorboard``: the folder of the
    run's TensorBoard event files (none without)."""
    labels = labels or records.Labels(sweep="", variant=rs.key)  # a run outside any sweep
    p = rs.protocol
    ex = Execution.resolve(p, rs.measure, threads)
    ex.configure()
    record = records.new_record(rs, labels, data.summary(),
                                environment(ex.device, ex.threads, ex.dtype, ex.channels_last))
    checkpoint = Layout(out).checkpoint(rs.key) if out is not None and p.checkpoint_every else None
    log.debug("run %s: %s seed %s on %s (%s, %d threads)", rs.key, labels.variant, rs.seed, ex.device,
              ex.dtype, ex.threads)
    t0 = time.perf_counter()
    monitor = None
    try:
        if tensorboard is not None:
            monitor = open_board(tensorboard)  # None, with a warning, where it cannot be written
        spec = variants.parse(rs.arch)
        torch.manual_seed(rs.seed)
        model = ex.place(variants.build(spec))
        fold = "" if rs.fold is None else f" fold {rs.fold}"
        with progress_bar(p.steps, f"{labels.variant} seed {rs.seed}{fold}", progress, leave=False) as bar:
            fr = fit(model, spec, data, p, rs.seed, ex, progress=bar, checkpoint=checkpoint, monitor=monitor)
        records.add_training(record, fr)
        if fr.status != "ok":
            records.end(record, t0, time.perf_counter(), fr.status, fr.error)
            return record
        _test_forms(record, model, spec, data, rs, ex)
        records.end(record, t0, time.perf_counter(), "ok")
        log.debug("run %s: ok in %.1f s", rs.key, record["time_s"])
    except Exception as e:  # noqa: BLE001 - recorded, the sweep goes on (OOM included)
        records.end(record, t0, time.perf_counter(), "failed", f"{e.__class__.__name__}: {e}".splitlines()[0],
                    traceback.format_exc(limit=-8), cause=failure_cause(e))
    finally:
        if monitor is not None:
            monitor.close()
        if ex.cuda:
            torch.cuda.empty_cache()
    return record


def existing_record(path: Path, warn: bool = True) -> dict | None:
    """The record at ``path``, or None when there is none, or it is not a record of this
    schema (written by hand or by another version): then the run is done again."""
    if not path.is_file():
        return None
    try:
        return records.read_record(path, path.stem)
    except (OSError, ValueError) as e:
        if warn:
            log.warning("%s; the run is done again", str(e).splitlines()[0])
        return None


def recorded(path: Path) -> dict | None:
    """The record at ``path`` when it records its run as ``run`` reads it (a record of this
    schema: ``run`` does any other again, as it does a file that is no record), else None:
    the one reading of "recorded" of ``plan``, ``status`` and runs.csv."""
    rec = existing_record(path, warn=False)
    return rec if rec is not None and rec["schema"] == records.SCHEMA else None


def mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _finished(path: Path, retry_failed: bool, seen: int | None) -> dict | None:
    """The record at ``path`` when the run needs no doing: a record of this schema, and
    with ``retry_failed``, not the failed record that was there when the sweep was listed
    (``seen``: its modification time; another runner may have retried it since)."""
    rec = existing_record(path, warn=False)  # the listing has said what is wrong with it
    if rec is None or rec["schema"] != records.SCHEMA:
        return None
    if retry_failed and rec["status"] == "failed" and mtime(path) == seen:
        return None
    return rec


def run_claimed(out: Path, run: PlannedRun, retry_failed: bool = False, threads: int | None = None,
                progress: bool = False) -> tuple[str, dict | None]:
    """The one path every runner takes for one run: claim it, check that nobody recorded it
    meanwhile, run it, write its record atomically, remove its checkpoint, release the claim
    (also on an error or Ctrl-C; the checkpoint is then kept, to resume from). ``run.seen``:
    the modification time of its record when the sweep was listed (``retry_failed`` retries
    that record only). Returns (outcome, record): ``ran``; ``done`` (recorded by another
    runner; its record); ``elsewhere`` (a live runner holds its claim; None)."""
    layout = Layout(out)
    path = layout.record(run.key)
    if (rec := _finished(path, retry_failed, run.seen)) is not None:
        return "done", rec
    held = claims.claim(out, run.key)
    if held is None:
        return "elsewhere", None
    with held:
        if (rec := _finished(path, retry_failed, run.seen)) is not None:
            return "done", rec
        board = (run_folder(out, run.labels.dataset, run.labels.variant, run.spec.seed, run.spec.fold)
                 if run.tensorboard else None)
        rec = run_one(run.spec, run.data, run.labels, progress=progress, out=out, threads=threads, tensorboard=board)
        records.write_record(out, rec)
        discard_checkpoint(layout.checkpoint(run.key))
    return "ran", rec


def run_key(sweep: Sweep, out: Path, key: str, dataset: str, retry_failed: bool = False,
            seen: int | None = None, threads: int | None = None) -> tuple[str, str | None, str | None]:
    """Run ``key`` of ``sweep`` through ``run_claimed``, in a worker process or a cluster
    job: (outcome, status, error)."""
    run = dataclasses.replace(planned_run(sweep, key, dataset), seen=seen)
    outcome, rec = run_claimed(Path(out), run, retry_failed, threads)
    return outcome, rec and rec["status"], rec and rec["error"]
