"""Runs: ``run_one(spec)`` trains, scores and measures one run spec and returns its
record; ``run_sweep`` runs every spec of a sweep that has no record yet."""
from __future__ import annotations

import contextlib
import logging
import sys
import time
import traceback
from pathlib import Path

import torch

import variants
from . import records
from .choices import resolve_precision
from .cost import count_macs, count_params
from .data import check_min_size, load_dataset
from .fileio import check_writable
from .evaluate import foreground_classes, image_scores, input_geometry, predict_classes, score
from .measure import environment, inference_cost, resolve_device
from .protocol import RunSpec
from .sweep import Sweep
from .train import fit

log = logging.getLogger("unet_ablate")


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


def run_one(rs: RunSpec, data, labels: records.Labels | None = None, progress: bool = False) -> dict:
    """Train, score on the test split once, and measure one run. Never raises for a run
    that fails: the exception text goes into the record with status ``failed``."""
    labels = labels or records.Labels(sweep="", variant=rs.key)  # a run outside any sweep
    device = resolve_device(rs.measure.device)
    p = rs.protocol
    precision = resolve_precision(p.amp, device)
    torch.set_num_threads(rs.measure.threads)
    record = records.new_record(rs, labels, data.summary(),
                                environment(device, rs.measure.threads, precision.dtype, p.channels_last))
    log.debug("run %s: %s seed %s on %s (%s, %d threads)", rs.key, labels.variant, rs.seed, device,
              precision.dtype, rs.measure.threads)
    t0 = time.perf_counter()
    try:
        spec = variants.parse(rs.arch)
        torch.manual_seed(rs.seed)
        model = variants.build(spec).to(device)
        if p.channels_last:
            model = model.to(memory_format=torch.channels_last)
        fold = "" if rs.fold is None else f" fold {rs.fold}"
        with _progress(p.steps, f"{labels.variant} seed {rs.seed}{fold}", progress, leave=False) as bar:
            fr = fit(model, spec, data, p, rs.seed, device, amp=precision.amp, progress=bar)
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
                    **inference_cost(fmodel, spec.in_channels, in_hw, device, rs.measure,
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


def check_sizes(sweep: Sweep, data, label: str = "") -> None:
    """Before anything trains: every image must be large enough for every pad-mode model
    (2**depth pixels; crop-mode models mirror-pad, smp baselines pad, so any size works for
    them), and every model must take the input of ``measure.size`` (tried on ``meta``, so
    it costs no compute)."""
    need = 1
    h, w = sweep.measure.size
    for v in sweep.variants:
        spec = arch_for_data(v.spec, data)
        if isinstance(spec, variants.ArchSpec) and spec.skip == "pad":
            need = max(need, variants.min_pad_size(spec))
        try:
            count_macs(spec, input_geometry(spec, h)[0], input_geometry(spec, w)[0])
        except ValueError as e:
            on = f" on data set {label!r}" if label else ""
            raise ValueError(f"measure.size: does not fit variant {v.label!r}{on}: {e}") from None
    check_min_size(data, need, need)


def _existing(path: Path) -> dict | None:
    """The record at ``path``, or None when there is none, or it is not a record of this
    schema (written by hand or by another version): then the run is done again."""
    if not path.is_file():
        return None
    try:
        return records.read_record(path)
    except (OSError, ValueError) as e:
        log.warning("%s; the run is done again", str(e).splitlines()[0])
        return None


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


def load_all(sweep: Sweep) -> dict:
    """Every data set of the sweep, loaded and checked against every variant: a one-line
    DataError or ValueError before anything is written."""
    loaded = {}
    for named in sweep.datasets:
        loaded[named.label] = load_dataset(named.spec)
        check_sizes(sweep, loaded[named.label], named.label if sweep.is_suite else "")
    return loaded


def run_sweep(sweep: Sweep, out: Path, retry_failed: bool = False, progress: bool = True,
              command: str = ""):
    """Run what has no record yet; returns the tidy frame (runs.csv) of every run of the sweep.
    ``command``: the command line that runs it (the report shows it to complete missing runs)."""
    out = Path(out)
    records.check_results_folder(out)    # a file where a folder belongs: one line, nothing written
    loaded = load_all(sweep)             # bad data: a one-line DataError before anything is written
    runs = plan(sweep, loaded)
    _say_what_changed(out, runs, loaded)
    done, todo, older = [], [], 0
    for rs, labels, view in runs:
        rec = _existing(records.record_path(out, rs.key))
        if rec is not None and rec["schema"] != records.SCHEMA:  # reports read it; it lacks what runs record now
            rec, older = None, older + 1
        if rec is not None and not (retry_failed and rec["status"] == "failed"):
            done.append({**rec, **labels.as_dict()})  # labels are the sweep's, not the file's
        else:
            todo.append((rs, labels, view))
    if older:
        log.warning("%d record(s) in %s were written by an older version (schema < %d, without the "
                    "metrics runs record now); those runs are done again", older, out, records.SCHEMA)
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
    if done:
        log.info("resuming: %d of %d runs already recorded in %s", len(done), len(runs), out)
    with _progress(len(todo), f"sweep {sweep.name}", progress) as bar:
        for rs, labels, view in todo:
            rec = run_one(rs, view, labels, progress=progress)
            records.write_record(out, rec)
            done.append(rec)
            where = f"{labels.dataset}: " if sweep.is_suite else ""
            fold = "" if rs.fold is None else f" fold {rs.fold}"
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{where}{labels.variant} s{rs.seed}{fold}: {rec['status']}")
            if rec["status"] != "ok":
                log.warning("%s%s seed %s%s: %s: %s", where, labels.variant, rs.seed, fold, rec["status"],
                            rec["error"])
    log.debug("%d runs done, %d of them now", len(done), len(todo))
    return records.write_runs_csv(out, done)
