"""Runs: ``run_one(spec)`` trains, scores and measures one run spec and returns its
record; ``run_sweep`` runs every spec of a sweep that has no record yet: here, one at a
time, in ``workers`` local processes, or as cluster jobs (``harness.cluster``).

Every runner takes the same path for one run (``run_claimed``): claim it
(``harness.claims``), run it, write its record atomically, remove its in-run checkpoint,
release the claim. So any number of runners may share one results folder, and ``runs.csv``
is rebuilt from every record on disk, whoever wrote it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch

import variants
from . import claims, log_to_stderr, records
from .choices import resolve_precision
from .cost import count_macs, count_params
from .data import check_min_size, load_dataset
from .fileio import check_writable
from .evaluate import foreground_classes, image_scores, input_geometry, predict_classes, score
from .measure import current_versions, environment, inference_cost, resolve_device
from .protocol import RunSpec
from .sweep import Sweep
from .train import discard_checkpoint, fit

log = logging.getLogger("unet_ablate")

DEFAULT_WORKERS = 1  # runs at once on one machine (``--workers``)


def checkpoint_path(results: Path, key: str) -> Path:
    """Where run ``key`` keeps its in-run checkpoint (``protocol.checkpoint_every``)."""
    return Path(results) / "checkpoints" / f"{key}.pt"


def model_classes(num_classes: int) -> int:
    """One logit for binary data, one per class otherwise."""
    return 1 if num_classes <= 2 else num_classes


def arch_for_data(spec, data):
    return spec.replace(in_channels=data.in_channels, classes=model_classes(data.num_classes))


def _progress(total: int, desc: str, enabled: bool, **kw):
    if not enabled:
        return contextlib.nullcontext()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, dynamic_ncols=True, file=sys.stderr, **kw)


def _form_model(model, spec, form: str, channels_last: bool):
    """The network of one inference form, in the memory format the run trained in."""
    if form == "mean":
        return model, spec
    fspec = spec.replace(form=form)
    pruned = model.pruned(fspec.form_column)
    if channels_last:
        pruned = pruned.to(memory_format=torch.channels_last)
    return pruned, fspec


def run_one(rs: RunSpec, data, labels: records.Labels | None = None, progress: bool = False,
            out: Path | None = None, threads: int | None = None) -> dict:
    """Train, score on the test split once, and measure one run. Never raises for a run
    that fails: the exception text goes into the record with status ``failed``.
    ``out``: the results folder, where the run keeps its in-run checkpoint when
    ``protocol.checkpoint_every`` is on (and resumes from one found there). ``threads``:
    the CPU threads to use instead of ``measure.threads`` (parallel workers split them);
    the record's ``env.threads`` says what was used."""
    labels = labels or records.Labels(sweep="", variant=rs.key)  # a run outside any sweep
    device = resolve_device(rs.measure.device)
    p = rs.protocol
    precision = resolve_precision(p.amp, device)
    measure = dataclasses.replace(rs.measure, threads=threads or rs.measure.threads)
    torch.set_num_threads(measure.threads)
    record = records.new_record(rs, labels, data.summary(),
                                environment(device, measure.threads, precision.dtype, p.channels_last))
    checkpoint = checkpoint_path(out, rs.key) if out is not None and p.checkpoint_every else None
    log.debug("run %s: %s seed %s on %s (%s, %d threads)", rs.key, labels.variant, rs.seed, device,
              precision.dtype, measure.threads)
    t0 = time.perf_counter()
    try:
        spec = variants.parse(rs.arch)
        torch.manual_seed(rs.seed)
        model = variants.build(spec).to(device)
        if p.channels_last:
            model = model.to(memory_format=torch.channels_last)
        fold = "" if rs.fold is None else f" fold {rs.fold}"
        with _progress(p.steps, f"{labels.variant} seed {rs.seed}{fold}", progress, leave=False) as bar:
            fr = fit(model, spec, data, p, rs.seed, device, amp=precision.amp, progress=bar,
                     checkpoint=checkpoint)
        records.add_training(record, fr)
        if fr.status != "ok":
            records.end(record, t0, time.perf_counter(), fr.status, fr.error)
            return record
        test_x, test_y, test_ids = data.subset("test")
        h, w = rs.measure.size
        for form in spec.forms:
            fmodel, fspec = _form_model(model, spec, form, p.channels_last)
            preds = predict_classes(fmodel, fspec, test_x, device, channels_last=p.channels_last,
                                    amp=precision.amp)
            in_hw = (input_geometry(fspec, h)[0], input_geometry(fspec, w)[0])
            cost = {"params": count_params(fmodel), "macs": count_macs(fspec, *in_hw),
                    "macs_size": [h, w], "input_size": list(in_hw),
                    **inference_cost(fmodel, spec.in_channels, in_hw, device, measure,
                                     p.channels_last, amp=precision.amp)}
            counts = score(preds, test_y, data.num_classes)
            records.add_form(record, form, counts, foreground_classes(data.num_classes), test_ids, cost,
                             preds, keep=rs.measure.keep_predictions,
                             image_metrics=image_scores(preds, test_y, data.num_classes, counts))
        records.end(record, t0, time.perf_counter(), "ok")
        log.debug("run %s: ok in %.1f s", rs.key, record["time_s"])
    except Exception as e:  # noqa: BLE001 - recorded, the sweep goes on (OOM included)
        records.end(record, t0, time.perf_counter(), "failed",
                    f"{e.__class__.__name__}: {e}".splitlines()[0], traceback.format_exc(limit=-8))
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return record


def data_identity(data) -> dict:
    """What a run key says about its data: the data spec, and for folder data the hash of
    what was read (``Dataset.content_key``), so that a run on changed data is a new run."""
    d = data.spec.to_dict()
    return d if data.spec.synthetic else {**d, "content": data.content_key}


def plan(sweep: Sweep, loaded: dict) -> list[tuple[RunSpec, records.Labels, object]]:
    """(run spec, labels, the data of its fold) for every data set, variant, seed and fold
    of a sweep; ``loaded``: data set label -> its loaded ``Dataset``."""
    out = []
    for named in sweep.datasets:
        data = loaded[named.label]
        identity = data_identity(data)
        for v in sweep.variants:
            arch = arch_for_data(v.spec, data)
            for seed in sweep.seeds:
                for view in data.fold_views():
                    rs = RunSpec(arch=arch.to_dict(), data=identity, protocol=sweep.protocol,
                                 measure=sweep.measure, seed=seed, fold=view.fold)
                    out.append((rs, records.Labels(sweep.name, v.label, v.factor, v.is_baseline,
                                                   named.label), view))
    seen: dict[str, str] = {}
    for rs, labels, _ in out:
        if seen.setdefault(rs.key, labels.variant) != labels.variant:
            raise ValueError(f"variants {seen[rs.key]!r} and {labels.variant!r} have the same spec "
                             f"({variants.parse(rs.arch).name}); each variant must differ")
    return out


def check_image_sizes(sweep: Sweep, data) -> None:
    """Every image must be large enough for every pad-mode model (2**depth pixels; crop-mode
    models mirror-pad, smp baselines pad, so any size works for them)."""
    need = 1
    for v in sweep.variants:
        spec = arch_for_data(v.spec, data)
        if isinstance(spec, variants.ArchSpec) and spec.skip == "pad":
            need = max(need, variants.min_pad_size(spec))
    check_min_size(data, need, need)


def check_input_size(sweep: Sweep, todo: list) -> None:
    """Before anything trains: the model of every run still to do must take the input of
    ``measure.size``, tried on ``meta`` (no compute) once per distinct network, so a rerun
    of a recorded sweep tries none."""
    h, w = sweep.measure.size
    tried = set()
    for rs, labels, *_ in todo:
        spec = variants.parse(rs.arch)
        if spec in tried:
            continue
        tried.add(spec)
        try:
            count_macs(spec, input_geometry(spec, h)[0], input_geometry(spec, w)[0])
        except ValueError as e:
            on = f" on data set {labels.dataset!r}" if sweep.is_suite else ""
            raise ValueError(f"measure.size: does not fit variant {labels.variant!r}{on}: {e}") from None


def _existing(path: Path, warn: bool = True) -> dict | None:
    """The record at ``path``, or None when there is none, or it is not a record of this
    schema (written by hand or by another version): then the run is done again."""
    if not path.is_file():
        return None
    try:
        return records.read_record(path)
    except (OSError, ValueError) as e:
        if warn:
            log.warning("%s; the run is done again", str(e).splitlines()[0])
        return None


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _finished(path: Path, retry_failed: bool, seen: int | None) -> dict | None:
    """The record at ``path`` when the run needs no doing: a record of this schema, and
    with ``retry_failed``, not the failed record that was there when the sweep was listed
    (``seen``: its modification time; another runner may have retried it since)."""
    rec = _existing(path, warn=False)  # the listing has said what is wrong with it
    if rec is None or rec["schema"] != records.SCHEMA:
        return None
    if retry_failed and rec["status"] == "failed" and _mtime(path) == seen:
        return None
    return rec


def run_claimed(out: Path, rs: RunSpec, labels: records.Labels, data, retry_failed: bool = False,
                seen: int | None = None, threads: int | None = None,
                progress: bool = False) -> tuple[str, dict | None]:
    """The one path every runner takes for one run: claim it, check that nobody recorded it
    meanwhile, run it, write its record atomically, remove its checkpoint, release the
    claim (also on an error or Ctrl-C; the checkpoint is then kept, to resume from).
    Returns (outcome, record): ``ran``; ``done`` (recorded by another runner; its record);
    ``elsewhere`` (a live runner holds its claim; None)."""
    path = records.record_path(out, rs.key)
    if (rec := _finished(path, retry_failed, seen)) is not None:
        return "done", rec
    held = claims.claim(out, rs.key)
    if held is None:
        return "elsewhere", None
    with held:
        if (rec := _finished(path, retry_failed, seen)) is not None:
            return "done", rec
        rec = run_one(rs, data, labels, progress=progress, out=out, threads=threads)
        records.write_record(out, rec)
        discard_checkpoint(checkpoint_path(out, rs.key))
    return "ran", rec


# --------------------------------------------------------------------------- one run by key

_LOADED: dict = {}  # in a worker process or cluster job: the data sets loaded so far, by spec


def planned_run(sweep: Sweep, key: str, dataset: str):
    """(run spec, labels, data of its fold) of run ``key`` of ``sweep``, loading only its
    data set ``dataset`` (once per process)."""
    named = next((n for n in sweep.datasets if n.label == dataset), None)
    if named is not None:
        if named.spec not in _LOADED:
            _LOADED[named.spec] = load_dataset(named.spec)
        one = dataclasses.replace(sweep, datasets=(named,))
        for rs, labels, view in plan(one, {named.label: _LOADED[named.spec]}):
            if rs.key == key:
                return rs, labels, view
    raise ValueError(f"run {key} is no run of sweep {sweep.name!r} now (its data changed since it was "
                     f"submitted?); run the sweep again")


def run_key(sweep: Sweep, out: Path, key: str, dataset: str, retry_failed: bool = False,
            seen: int | None = None, threads: int | None = None) -> tuple[str, str | None, str | None]:
    """Run ``key`` of ``sweep`` through ``run_claimed``, in a worker process or a cluster
    job: (outcome, status, error)."""
    global _running
    if _stopping:
        return "stopped", None, None
    _running = True
    try:
        rs, labels, view = planned_run(sweep, key, dataset)
        outcome, rec = run_claimed(Path(out), rs, labels, view, retry_failed, seen, threads)
    finally:
        _running = False
    return outcome, rec and rec["status"], rec and rec["error"]


# --------------------------------------------------------------------------- local worker processes

_stopping = False  # in a worker: Ctrl-C was pressed; runs not yet started are left alone
_running = False   # in a worker: a run is in progress


def _on_interrupt(signum, frame):
    """Ctrl-C in a worker stops its run (once: a second Ctrl-C must not break the clean-up
    of the first), and leaves an idle worker to end quietly."""
    global _stopping
    if not _stopping:
        _stopping = True
        if _running:
            raise KeyboardInterrupt


def _start_worker(ids, gpus: list[str], level: int) -> None:
    """A worker process: its own GPU (``CUDA_VISIBLE_DEVICES``) when there are several,
    the parent's log level, and Ctrl-C stopping its run (claim released, checkpoint kept)."""
    i = ids.get()
    if len(gpus) > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
    log_to_stderr(level)
    signal.signal(signal.SIGINT, _on_interrupt)


def visible_gpus(device: str) -> list[str]:
    """The GPUs workers can be given one each: the ids of ``CUDA_VISIBLE_DEVICES``, else
    0..n-1; none on CPU."""
    if resolve_device(device).type != "cuda":
        return []
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    return [g for g in given.split(",") if g] if given else [str(i) for i in range(torch.cuda.device_count())]


def worker_threads(measure_threads: int, workers: int) -> int:
    """The CPU threads of each of ``workers`` processes: the sweep's, split between them."""
    return max(1, measure_threads // workers)


def _run_in_workers(sweep: Sweep, out: Path, todo: list, workers: int, retry_failed: bool):
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
        futures = {pool.submit(run_key, sweep, out, rs.key, labels.dataset, retry_failed, seen, threads): i
                   for i, (rs, labels, _, seen) in enumerate(todo)}
        for f in as_completed(futures):
            yield (futures[f], *f.result())
    except BrokenProcessPool:
        raise ValueError(f"a worker process died (killed, or out of memory?); the records written so far in "
                         f"{out} are whole: the same command goes on from there") from None
    finally:  # Ctrl-C (the workers get it too) or an error: start nothing more
        pool.shutdown(wait=True, cancel_futures=True)


def _run_as_jobs(sweep: Sweep, out: Path, todo: list, launcher: str, retry_failed: bool):
    """One submitit job per run of ``todo`` that no live runner holds; yields as they end."""
    from . import cluster

    index = []  # the runs to submit, by their place in todo
    for i, (rs, *_) in enumerate(todo):
        if claims.is_held(out, rs.key):
            yield i, "elsewhere", None, None
        else:
            index.append(i)
    if not index:
        return
    jobs = cluster.submit(sweep, out, [todo[i] for i in index], launcher, retry_failed)
    log.info("%d job(s) submitted (%s); their logs are in %s", len(jobs), launcher, cluster.folder(out))
    for j, outcome, status, error in cluster.wait(jobs, cluster.POLL_S[launcher]):
        yield index[j], outcome, status, error


def _run_here(out: Path, todo: list, retry_failed: bool, progress: bool):
    for i, (rs, labels, view, seen) in enumerate(todo):
        outcome, rec = run_claimed(out, rs, labels, view, retry_failed, seen, progress=progress)
        yield i, outcome, rec and rec["status"], rec and rec["error"]


def _say_what_changed(out: Path, runs, loaded: dict) -> None:
    """One line before anything runs when planned runs had records made on other data
    (or under other settings): those records are kept aside, never reused."""
    try:
        old = records.read_plan(out)
    except ValueError:
        return  # written by another version: nothing to compare with
    if old is None:
        return
    new = {(labels.dataset, labels.variant, rs.seed, rs.fold): rs.key for rs, labels, _ in runs}
    stale = [r for r in old.runs if new.get((r.dataset, r.variant, r.seed, r.fold), r.key) != r.key
             and records.record_path(out, r.key).is_file()]
    if not stale:
        return
    try:
        before = records.read_record(records.record_path(out, stale[0].key))["spec"]["data"]
    except ValueError:
        before = {}
    data = loaded.get(stale[0].dataset) or next(iter(loaded.values()))
    changed = before.get("content") != data_identity(data).get("content")
    what = (f"the data in {data.spec.root} changed since they ran" if changed
            else "the sweep's settings changed since they ran")
    log.warning("%d recorded run(s) in %s are not reused: %s; they are done again and the old "
                "records are left out of the report", len(stale), out, what)


def _say_other_environments(out: Path, reused: list[dict]) -> None:
    """One line when reused records were made under other package versions or another
    commit than this process's: a version is not part of the run key, so they are reused,
    but never silently (the report names the mix too)."""
    now = current_versions()
    other: dict[str, set] = {}  # field -> the values of the records that differ
    n = 0
    for rec in reused:
        found = {f: str(v) for f, mine in now.items()
                 if (v := records.env_value(rec["env"], f)) is not None and v != mine}
        n += bool(found)
        for f, v in found.items():
            other.setdefault(f, set()).add(v)
    if n:
        short = lambda f, v: str(v)[:10] if f == "git_commit" else str(v)  # noqa: E731
        differ = "; ".join(f"{f} {', '.join(short(f, v) for v in sorted(vs))} (now {short(f, now[f])})"
                           for f, vs in other.items())
        log.warning("%d recorded run(s) in %s are reused although they ran under another environment: %s; "
                    "the report names the mix", n, out, differ)


def load_all(sweep: Sweep) -> dict:
    """Every data set of the sweep, loaded, its images checked against every variant: a
    one-line DataError or ValueError before anything is written."""
    loaded = {}
    for named in sweep.datasets:
        loaded[named.label] = load_dataset(named.spec)
        check_image_sizes(sweep, loaded[named.label])
    return loaded


def _prepare(sweep: Sweep, out: Path, retry_failed: bool, command: str) -> tuple[list, list]:
    """Check and load everything, write the plan and the samples, and list what has no
    record: (every planned run, the runs to do as (spec, labels, data, seen))."""
    records.check_results_folder(out)    # a file where a folder belongs: one line, nothing written
    loaded = load_all(sweep)             # bad data: a one-line DataError before anything is written
    runs = plan(sweep, loaded)
    _say_what_changed(out, runs, loaded)
    todo, older, reused = [], 0, []
    for rs, labels, view in runs:
        path = records.record_path(out, rs.key)
        seen, rec = _mtime(path), _existing(path)
        if rec is not None and rec["schema"] != records.SCHEMA:  # reports read it; it lacks what runs record now
            older += 1
        elif rec is not None and not (retry_failed and rec["status"] == "failed"):
            reused.append(rec)
            continue
        todo.append((rs, labels, view, seen))
    _say_other_environments(out, reused)
    if older:
        log.warning("%d record(s) in %s were written by an older version (schema < %d, without the "
                    "metrics runs record now); those runs are done again", older, out, records.SCHEMA)
    check_input_size(sweep, todo)        # a model that cannot take measure.size: one line, nothing written
    if todo:
        check_writable(records.record_path(out, "").parent)  # fail now, not after the first run
    # a fully recorded sweep rerun writes nothing (each writer skips identical content), so
    # its summary prints even from a read-only folder
    records.write_plan(out, records.SweepPlan(
        name=sweep.name, source=sweep.source, description=sweep.description, command=command,
        baseline=sweep.baseline.label, variants=tuple(v.label for v in sweep.variants),
        families={v.label: v.family for v in sweep.variants}, seeds=tuple(sweep.seeds),
        runs=tuple(records.PlannedRun(rs.key, labels.variant, rs.seed, labels.dataset, rs.fold)
                   for rs, labels, _ in runs),
        metric=sweep.metric, datasets=tuple(n.label for n in sweep.datasets)))
    keep = sweep.measure.keep_predictions
    for data in loaded.values():
        test_x, test_y, test_ids = data.subset("test")  # k-fold: fold 0's test images
        records.write_samples(out, data.spec.key, test_ids[:keep], test_x[:keep], test_y[:keep])
    if len(todo) < len(runs):
        log.info("resuming: %d of %d runs already recorded in %s", len(runs) - len(todo), len(runs), out)
    return runs, todo


def collect(out: Path, runs) -> "pd.DataFrame":  # noqa: F821 - pandas comes with records
    """``runs.csv`` rebuilt from every record of the planned ``runs`` on disk, whichever
    runner wrote it (written atomically); returns the frame. Where a record lands while it
    is rebuilt, it is rebuilt again: of runners that end together, the last to write it
    writes every record."""
    paths = [(records.record_path(out, rs.key), labels) for rs, labels, _ in runs]
    while True:
        before = [_mtime(path) for path, _ in paths]
        found = []
        for path, labels in paths:
            rec = _existing(path, warn=False)
            if rec is not None and rec["schema"] == records.SCHEMA:
                found.append({**rec, **labels.as_dict()})  # labels are the sweep's, not the file's
        df = records.write_runs_csv(out, found)
        if [_mtime(path) for path, _ in paths] == before:
            return df


def run_sweep(sweep: Sweep, out: Path, retry_failed: bool = False, progress: bool = True,
              command: str = "", workers: int = DEFAULT_WORKERS, launcher: str | None = None):
    """Run what has no record yet; returns the tidy frame (runs.csv) of every recorded run
    of the sweep. ``command``: the command line that runs it (the report shows it to
    complete missing runs). ``workers`` > 1: that many runs at once in local processes;
    ``launcher`` ("slurm" or "local"): one submitit job per run, waited for."""
    out = Path(out)
    if launcher is not None:
        from .cluster import check_available
        check_available(launcher)
    runs, todo = _prepare(sweep, out, retry_failed, command)
    counts = dict.fromkeys(("ran", "done", "elsewhere", "lost", "stopped"), 0)
    with _progress(len(todo), f"sweep {sweep.name}", progress) as bar:
        if not todo:
            ended = iter(())
        elif launcher is not None:
            ended = _run_as_jobs(sweep, out, todo, launcher, retry_failed)
        elif workers > 1:
            ended = _run_in_workers(sweep, out, todo, workers, retry_failed)
        else:
            ended = _run_here(out, todo, retry_failed, progress)
        for i, outcome, status, error in ended:
            rs, labels = todo[i][:2]
            counts[outcome] += 1
            where = f"{labels.dataset}: " if sweep.is_suite else ""
            fold = "" if rs.fold is None else f" fold {rs.fold}"
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{where}{labels.variant} s{rs.seed}{fold}: {status or outcome}")
            if outcome == "lost":
                log.warning("%s%s seed %s%s: no record: %s", where, labels.variant, rs.seed, fold, error)
            elif status not in (None, "ok"):
                log.warning("%s%s seed %s%s: %s: %s", where, labels.variant, rs.seed, fold, status, error)
    if counts["done"] or counts["elsewhere"]:
        say = log.warning if counts["elsewhere"] else log.info
        say("%d run(s) were recorded by other runners meanwhile and %d are still running elsewhere "
            "(claimed in %s); runs.csv holds the records so far", counts["done"], counts["elsewhere"],
            claims.claim_path(out, "").parent)
    log.debug("%d runs planned, %d run now", len(runs), counts["ran"])
    return collect(out, runs)


def submit_sweep(sweep: Sweep, out: Path, launcher: str, retry_failed: bool = False, command: str = ""):
    """Submit one submitit job per run that has no record and no live claim, and return at
    once: the jobs."""
    from . import cluster

    cluster.check_available(launcher)
    out = Path(out)
    _, todo = _prepare(sweep, out, retry_failed, command)
    todo = [t for t in todo if not claims.is_held(out, t[0].key)]
    return cluster.submit(sweep, out, todo, launcher, retry_failed) if todo else []
