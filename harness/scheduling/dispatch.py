"""Scheduling a sweep: ``run_sweep`` runs every planned run (``harness.scheduling.planning``) that has no
record yet, here one at a time, in ``workers`` local processes (``harness.scheduling.workers``), or as
cluster jobs (``harness.scheduling.cluster``); each goes the one way of ``harness.scheduling.one_run.run_claimed``, so
any number of runners may share one results folder, and ``runs.csv`` is rebuilt from every
record on disk, whoever wrote it.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..fileio import check_writable
from ..spec.sweep import Sweep
from ..store import records, samples, sweep_plan
from ..store.environment import current_versions, env_value
from ..store.layout import Layout
from ..store.runs_table import write_runs_csv
from . import claims
from .one_run import existing_record, mtime, progress_bar, recorded, run_claimed
from .planning import PlannedRun, check_input_size, data_identity, load_all, plan

log = logging.getLogger("unet_ablate")

DEFAULT_WORKERS = 1  # runs at once on one machine (``--workers``)


def _run_as_jobs(sweep: Sweep, out: Path, todo: list, launcher: str, retry_failed: bool):
    """One submitit job per run of ``todo`` that no live runner holds; yields as they end."""
    from . import cluster

    index = []  # the runs to submit, by their place in todo
    for i, run in enumerate(todo):
        if claims.is_held(out, run.key):
            yield i, "elsewhere", None, None
        else:
            index.append(i)
    if not index:
        return
    jobs = cluster.submit(sweep, out, [todo[i] for i in index], launcher, retry_failed)
    log.info("%d job(s) submitted (%s); their logs are in %s", len(jobs), launcher, Layout(out).submitit)
    for j, outcome, status, error in cluster.wait(jobs, cluster.POLL_S[launcher]):
        yield index[j], outcome, status, error


def _run_here(out: Path, todo: list, retry_failed: bool, progress: bool):
    for i, run in enumerate(todo):
        outcome, rec = run_claimed(out, run, retry_failed, progress=progress)
        yield i, outcome, rec and rec["status"], rec and rec["error"]


def _say_what_changed(out: Path, runs, loaded: dict) -> None:
    """One line before anything runs when planned runs had records made on other data
    (or under other settings): those records are kept aside, never reused."""
    try:
        old = sweep_plan.read_plan(out)
    except ValueError:
        return  # written by another version: nothing to compare with
    if old is None:
        return
    new = {(r.labels.dataset, r.labels.variant, r.spec.seed, r.spec.fold): r.key for r in runs}
    stale = [r for r in old.runs if new.get((r.dataset, r.variant, r.seed, r.fold), r.key) != r.key
             and Layout(out).record(r.key).is_file()]
    if not stale:
        return
    try:
        before = records.read_record(Layout(out).record(stale[0].key))["spec"]["data"]
    except ValueError:
        before = {}
    data = loaded.get(stale[0].dataset) or next(iter(loaded.values()))
    now = data_identity(data)
    split = lambda d: (d.get("split", "holdout"), d.get("folds"))  # noqa: E731 - holdout keys leave them out
    if before and split(before) != split(now):
        what = "the split changed since they ran (holdout or k-fold, or the number of folds)"
    elif before.get("content") != now.get("content"):
        what = f"the data in {data.spec.root} changed since they ran"
    else:
        what = "the sweep's settings changed since they ran"
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
                 if (v := env_value(rec["env"], f)) is not None and v != mine}
        n += bool(found)
        for f, v in found.items():
            other.setdefault(f, set()).add(v)
    if n:
        short = lambda f, v: str(v)[:10] if f == "git_commit" else str(v)  # noqa: E731
        differ = "; ".join(f"{f} {', '.join(short(f, v) for v in sorted(vs))} (now {short(f, now[f])})"
                           for f, vs in other.items())
        log.warning("%d recorded run(s) in %s are reused although they ran under another environment: %s; "
                    "the report names the mix", n, out, differ)


def _write_plan(sweep: Sweep, out: Path, runs: list[PlannedRun], command: str) -> None:
    """sweep.json: the plan of this sweep, unless the folder's plan holds every one of its runs
    and more (a part run with --variants or --seeds: the report keeps the whole sweep, its
    design and families). A fully recorded sweep rerun writes nothing (each writer skips
    identical content), so its summary prints even from a read-only folder."""
    try:
        before = sweep_plan.read_plan(out)
    except ValueError:
        before = None  # not a plan: this one replaces it
    if before is not None and before.name == sweep.name and {r.key for r in runs} < set(before.keys):
        log.info("sweep.json keeps the plan of the whole sweep (%d runs); this run does %d of them",
                 len(before.runs), len(runs))
        return
    sweep_plan.write_plan(out, sweep_plan.SweepPlan(
        name=sweep.name, source=sweep.source, description=sweep.description, command=command,
        baseline=sweep.baseline.label, variants=tuple(v.label for v in sweep.variants),
        families={v.label: v.family for v in sweep.variants}, seeds=tuple(sweep.seeds),
        runs=tuple(sweep_plan.PlanEntry(r.key, r.labels.variant, r.spec.seed, r.labels.dataset, r.spec.fold)
                   for r in runs),
        report=sweep.report, datasets=tuple(n.label for n in sweep.datasets),
        design=sweep_plan.design_dict(sweep.design)))


def _prepare(sweep: Sweep, out: Path, retry_failed: bool, command: str) -> tuple[list, list]:
    """Check and load everything, write the plan and the samples, and list what has no
    record: (every planned run, the runs to do, each with the ``seen`` of its record)."""
    Layout(out).check()                  # a file where a folder belongs: one line, nothing written
    loaded = load_all(sweep)             # bad data: a one-line DataError before anything is written
    runs = plan(sweep, loaded)
    _say_what_changed(out, runs, loaded)
    todo, older, reused = [], 0, []
    for run in runs:
        path = Layout(out).record(run.key)
        seen, rec = mtime(path), existing_record(path)
        if rec is not None and rec["schema"] != records.SCHEMA:  # reports read it; it lacks what runs record now
            older += 1
        elif rec is not None and not (retry_failed and rec["status"] == "failed"):
            reused.append(rec)
            continue
        todo.append(dataclasses.replace(run, seen=seen))
    _say_other_environments(out, reused)
    if older:
        log.warning("%d record(s) in %s were written by an older version (schema < %d, without the "
                    "metrics runs record now); those runs are done again", older, out, records.SCHEMA)
    check_input_size(sweep, todo)        # a model that cannot take measure.size: one line, nothing written
    if todo:
        check_writable(Layout(out).runs)  # fail now, not after the first run
    _write_plan(sweep, out, runs, command)
    keep = sweep.measure.keep_predictions
    for data in loaded.values():  # the test images whose predictions runs keep (k-fold: of each fold)
        shown = [[part[:keep] for part in view.subset("test")] for view in data.fold_views()]
        test_x, test_y, test_ids = ([x for part in shown for x in part[k]] for k in range(3))
        samples.write_samples(out, data.spec.key, test_ids, test_x, test_y)
    if len(todo) < len(runs):
        log.info("resuming: %d of %d runs already recorded in %s", len(runs) - len(todo), len(runs), out)
    return runs, todo


def collect(out: Path, runs) -> "pd.DataFrame":  # noqa: F821 - pandas comes with records
    """``runs.csv`` rebuilt from every record of the planned ``runs`` on disk, whichever
    runner wrote it (written atomically); returns the frame. Where a record lands while it
    is rebuilt, it is rebuilt again: of runners that end together, the last to write it
    writes every record."""
    paths = [(Layout(out).record(r.key), r.labels) for r in runs]
    while True:
        before = [mtime(path) for path, _ in paths]
        found = []
        for path, labels in paths:
            if (rec := recorded(path)) is not None:
                found.append({**rec, **labels.as_dict()})  # labels are the sweep's, not the file's
        df = write_runs_csv(out, found)
        if [mtime(path) for path, _ in paths] == before:
            return df


def _dispatch(sweep: Sweep, out: Path, todo: list[PlannedRun], workers: int, launcher: str | None,
              retry_failed: bool, progress: bool):
    """Run ``todo`` as jobs, in worker processes or here; yields (index in todo, outcome,
    status, error) as runs end."""
    if launcher is not None:
        return _run_as_jobs(sweep, out, todo, launcher, retry_failed)
    if workers > 1:
        from .workers import run_in_workers
        return run_in_workers(sweep, out, todo, workers, retry_failed)
    return _run_here(out, todo, retry_failed, progress)


def _ended(sweep: Sweep, todo: list[PlannedRun], ended, counts: dict, bar) -> list[int]:
    """Count and say how each run ended (``ended`` yields (index in todo, outcome, status,
    error)); returns the indices of the runs a live runner held elsewhere."""
    elsewhere = []
    for i, outcome, status, error in ended:
        rs, labels = todo[i].spec, todo[i].labels
        counts[outcome] += 1
        if outcome == "elsewhere":
            elsewhere.append(i)
        where = f"{labels.dataset}: " if sweep.is_suite else ""
        fold = "" if rs.fold is None else f" fold {rs.fold}"
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{where}{labels.variant} s{rs.seed}{fold}: {status or outcome}")
        if outcome == "lost":
            log.warning("%s%s seed %s%s: no record: %s", where, labels.variant, rs.seed, fold, error)
        elif status not in (None, "ok"):
            log.warning("%s%s seed %s%s: %s: %s", where, labels.variant, rs.seed, fold, status, error)
    return elsewhere


def _elsewhere_text(done: int, elsewhere: int, out: Path) -> str:
    """What other runners did meanwhile, in words that agree with the counts: "1 run was
    recorded by another runner meanwhile", "2 runs are still running elsewhere (claimed in
    ...)" (a run counts as running elsewhere only while a live runner holds its claim)."""
    parts = []
    if done:
        parts.append(f"{done} run was recorded by another runner meanwhile" if done == 1 else
                     f"{done} runs were recorded by other runners meanwhile")
    if elsewhere:
        parts.append(f"{elsewhere} {'run is' if elsewhere == 1 else 'runs are'} still running elsewhere "
                     f"(claimed in {Layout(out).claims})")
    return " and ".join(parts)


def run_sweep(sweep: Sweep, out: Path, retry_failed: bool = False, progress: bool = True,
              command: str = "", workers: int = DEFAULT_WORKERS, launcher: str | None = None):
    """Run what has no record yet; returns the tidy frame (runs.csv) of every recorded run
    of the sweep. ``command``: the command line that runs it (the report shows it to
    complete missing runs). ``workers`` > 1: that many runs at once in local processes;
    ``launcher`` ("slurm" or "local"): one submitit job per run, waited for. Before it
    ends, a run that another runner held is looked at again: if its holder died meanwhile
    (its claim is stale now), this runner takes it over and runs it."""
    out = Path(out)
    if launcher is not None:
        from .cluster import check_available
        check_available(launcher)
    if launcher is None:
        from .workers import check_gpu_sharing
        check_gpu_sharing(sweep.measure.device, workers)
    runs, todo = _prepare(sweep, out, retry_failed, command)
    counts = dict.fromkeys(("ran", "done", "elsewhere", "lost", "stopped"), 0)
    with progress_bar(len(todo), f"sweep {sweep.name}", progress) as bar:
        ended = _dispatch(sweep, out, todo, workers, launcher, retry_failed, progress) if todo else iter(())
        elsewhere = _ended(sweep, todo, ended, counts, bar)
        again = [todo[i] for i in elsewhere if not claims.is_held(out, todo[i].key)]
        if again and launcher is None:  # (jobs: the next `run` takes them over, as a job may not run here)
            log.info("%d run(s) held elsewhere are no longer held (ended or orphaned); looking again", len(again))
            counts["elsewhere"] -= len(again)
            _ended(sweep, again, _dispatch(sweep, out, again, workers, None, retry_failed, progress), counts, None)
    if counts["done"] or counts["elsewhere"]:
        say = log.warning if counts["elsewhere"] else log.info
        say("%s; runs.csv holds the records so far", _elsewhere_text(counts["done"], counts["elsewhere"], out))
    log.debug("%d runs planned, %d run now", len(runs), counts["ran"])
    return collect(out, runs)


def submit_sweep(sweep: Sweep, out: Path, launcher: str, retry_failed: bool = False, command: str = ""):
    """Submit one submitit job per run that has no record and no live claim, and return at
    once: the jobs."""
    from . import cluster

    cluster.check_available(launcher)
    out = Path(out)
    _, todo = _prepare(sweep, out, retry_failed, command)
    todo = [t for t in todo if not claims.is_held(out, t.key)]
    return cluster.submit(sweep, out, todo, launcher, retry_failed) if todo else []
