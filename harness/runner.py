"""Runs: ``run_one(spec)`` trains, scores and measures one run spec and returns its
record; ``run_sweep`` runs every spec of a sweep that has no record yet."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import sys
import time
import traceback
from pathlib import Path

import torch

import variants
from .cost import count_macs, count_params
from .data import check_min_size, load_dataset
from .evaluate import form_result, input_geometry, predict_classes
from .measure import environment, inference_cost, resolve_device
from .protocol import RunSpec
from .records import SCHEMA, record_path, runs_frame, write_json_atomic, write_text_atomic
from .sweep import Sweep, load_sweep, override
from .train import fit


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def model_classes(num_classes: int) -> int:
    """One logit for binary data, one per class otherwise."""
    return 1 if num_classes <= 2 else num_classes


def arch_for_data(spec, ds):
    return spec.replace(in_channels=ds.in_channels, classes=model_classes(ds.num_classes))


def _progress(total: int, desc: str, enabled: bool, **kw):
    if not enabled:
        return contextlib.nullcontext()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, dynamic_ncols=True, file=sys.stderr, **kw)


def _form_model(model, spec, form: str, channels_last: bool):
    """The network of one inference form, in the memory format the run trained in."""
    if form == "mean":
        return model, spec
    pruned = model.pruned(int(form[1:]))
    if channels_last:
        pruned = pruned.to(memory_format=torch.channels_last)
    return pruned, spec.replace(head=form)


def run_one(rs: RunSpec, ds, meta: dict | None = None, progress: bool = False) -> dict:
    """Train, score on the test split once, and measure one run. Never raises for a run
    that fails: the exception text goes into the record with status ``failed``."""
    meta = meta or {}
    record = {"schema": SCHEMA, "key": rs.key, **meta, "seed": rs.seed, "spec": rs.to_dict(),
              "status": "failed", "error": None, "started": _now(), "data": ds.summary(),
              "train": None, "forms": []}
    t0 = time.perf_counter()
    device = resolve_device(rs.measure.device)
    threads = rs.measure.threads
    torch.set_num_threads(threads)
    p = rs.protocol
    dtype = "bfloat16" if p.amp == "bf16" and device.type == "cuda" else "float32"
    record["env"] = environment(device, threads, dtype, p.channels_last)
    try:
        spec = variants.parse(rs.arch)
        torch.manual_seed(rs.seed)
        model = variants.build(spec).to(device)
        if p.channels_last:
            model = model.to(memory_format=torch.channels_last)
        label = f"{meta.get('variant', spec.name)} seed {rs.seed}"
        with _progress(p.steps, label, progress, leave=False) as bar:
            fr = fit(model, spec, ds, p, rs.seed, device, progress=bar)
        record["train"] = dataclasses.asdict(fr)
        del record["train"]["status"], record["train"]["error"]
        if fr.status != "ok":
            record.update(status=fr.status, error=fr.error)
            return record
        autocast = None
        if dtype == "bfloat16":
            def autocast():
                return torch.autocast("cuda", dtype=torch.bfloat16)
        test_x, test_y, test_ids = ds.subset("test")
        h, w = rs.measure.size
        for form in spec.heads:
            fmodel, fspec = _form_model(model, spec, form, p.channels_last)
            preds = predict_classes(fmodel, fspec, test_x, device, channels_last=p.channels_last, autocast=autocast)
            result = form_result(form, preds, test_y, test_ids, ds.num_classes, rs.measure.keep_predictions)
            in_hw = (input_geometry(fspec, h)[0], input_geometry(fspec, w)[0])
            result["cost"] = {"params": count_params(fmodel), "macs": count_macs(fspec, *in_hw),
                              "macs_size": [h, w], "input_size": list(in_hw),
                              **inference_cost(fmodel, spec.in_channels, in_hw, device, rs.measure,
                                               p.channels_last, autocast)}
            record["forms"].append(result)
        record["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - recorded, the sweep goes on (OOM included)
        record["error"] = f"{e.__class__.__name__}: {e}".splitlines()[0]
        record["traceback"] = traceback.format_exc(limit=-8)
    finally:
        record["finished"] = _now()
        record["time_s"] = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return record


def plan(sweep: Sweep, ds) -> list[tuple[RunSpec, dict]]:
    """(run spec, record metadata) for every variant and seed of a sweep."""
    out = []
    for v in sweep.variants:
        arch = arch_for_data(v.spec, ds)
        for seed in sweep.seeds:
            rs = RunSpec(arch=arch.to_dict(), data=sweep.data.to_dict(), protocol=sweep.protocol,
                         measure=sweep.measure, seed=seed)
            out.append((rs, {"sweep": sweep.name, "variant": v.label, "factor": v.factor,
                             "is_baseline": v.is_baseline}))
    seen: dict[str, str] = {}
    for rs, meta in out:
        if seen.setdefault(rs.key, meta["variant"]) != meta["variant"]:
            raise ValueError(f"variants {seen[rs.key]!r} and {meta['variant']!r} have the same spec "
                             f"({variants.parse(rs.arch).name}); each variant must differ")
    return out


def check_sizes(sweep: Sweep, ds) -> None:
    """Every image must be large enough for every pad-mode model (2**depth pixels);
    crop-mode models mirror-pad, smp baselines pad, so any size works for them."""
    need = 1
    for v in sweep.variants:
        spec = arch_for_data(v.spec, ds)
        if isinstance(spec, variants.ArchSpec) and spec.skip == "pad":
            need = max(need, 2 ** spec.depth)
    check_min_size(ds, need, need)


def summary_table(df) -> str:
    ok = df[df.status == "ok"]
    if ok.empty:
        return "no run finished"
    g = ok.groupby(["variant", "form"], sort=False)
    t = g.agg(dice=("dice", "mean"), dice_std=("dice", "std"), iou=("iou", "mean"), params=("params", "first"),
              macs=("macs", "first"), infer_img_s=("infer_img_s", "median"), train_img_s=("train_img_s", "median"))
    t["runs"] = df.groupby(["variant", "form"], sort=False).apply(
        lambda x: f"{(x.status == 'ok').sum()}/{len(x)}", include_groups=False)
    t["Dice"] = [f"{d:.4f} ± {s:.4f}" if s == s else f"{d:.4f}" for d, s in zip(t.dice, t.dice_std)]
    t["params (M)"] = (t.params / 1e6).round(3)
    t["GMACs"] = (t.macs / 1e9).round(3)
    t["infer img/s"] = t.infer_img_s.round(1)
    t["train img/s"] = t.train_img_s.round(1)
    return t[["runs", "Dice", "params (M)", "GMACs", "infer img/s", "train img/s"]].to_string()


def _existing(path: Path) -> dict | None:
    """The record at ``path``, or None when there is none (or it is not readable JSON,
    which atomic writes rule out unless it was edited by hand: then the run is redone)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        print(f"{path}: unreadable record, the run is done again", file=sys.stderr)
        return None


def run_sweep(sweep: Sweep, out: Path, retry_failed: bool = False, progress: bool = True):
    """Run what has no record yet; returns the tidy frame of every record of the sweep."""
    ds = load_dataset(sweep.data)        # bad data: a one-line DataError before anything is written
    check_sizes(sweep, ds)
    runs = plan(sweep, ds)
    out = Path(out)
    write_json_atomic(out / "sweep.json", {
        "name": sweep.name, "source": sweep.source, "description": sweep.description,
        "baseline": sweep.baseline.label, "variants": [v.label for v in sweep.variants],
        "seeds": sweep.seeds, "keys": [rs.key for rs, _ in runs]})
    records = []
    todo = []
    for rs, meta in runs:
        rec = _existing(record_path(out, rs.key))
        if rec is not None and not (retry_failed and rec["status"] == "failed"):
            records.append({**rec, **meta})  # labels are the sweep's, not the file's
        else:
            todo.append((rs, meta))
    if len(todo) < len(runs):
        print(f"resuming: {len(runs) - len(todo)} of {len(runs)} runs already recorded in {out}", file=sys.stderr)
    with _progress(len(todo), f"sweep {sweep.name}", progress) as bar:
        for rs, meta in todo:
            rec = run_one(rs, ds, meta, progress=progress)
            write_json_atomic(record_path(out, rs.key), rec)
            records.append(rec)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{meta['variant']} s{rs.seed}: {rec['status']}")
            if rec["status"] != "ok":
                print(f"\n{meta['variant']} seed {rs.seed}: {rec['status']}: {rec['error']}", file=sys.stderr)
    df = runs_frame(records)
    write_text_atomic(out / "runs.csv", df.to_csv(index=False))
    return df


def cmd_run(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.sweep)
    labels = [s for s in args.variants.split(",") if s] if args.variants else None
    sweep = override(sweep, args.data, args.layout, labels, args.seeds, args.steps, args.device)
    out = Path(args.out or Path("results") / sweep.name)
    df = run_sweep(sweep, out, retry_failed=args.retry_failed, progress=not args.no_progress)
    print(summary_table(df))
    n_bad = int((df.drop_duplicates("key").status != "ok").sum())
    print(f"\n{df.key.nunique()} runs ({n_bad} not ok) in {out}/runs, table {out}/runs.csv")
    return 0


def add_run_command(sub) -> None:
    q = sub.add_parser("run", help="train, evaluate and measure every variant of a sweep (resumable)")
    q.add_argument("sweep", help="a sweep preset (smoke, cpu, gpu) or a TOML file")
    q.add_argument("--data", metavar="DIR", help="your own folder of images and masks")
    q.add_argument("--layout", choices=["auto", "pairs", "isbi", "voc"], help="folder layout (default auto)")
    q.add_argument("--variants", metavar="A,B", help="only these variant labels (or spec names), plus the baseline")
    q.add_argument("--seeds", type=int, metavar="N", help="seeds 0..N-1")
    q.add_argument("--steps", type=int, metavar="N", help="training steps per run")
    q.add_argument("--device", choices=["auto", "cpu", "cuda"])
    q.add_argument("--out", metavar="DIR", help="default: results/<sweep name>")
    q.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")
    q.add_argument("--no-progress", action="store_true", help="no progress bars")
    q.set_defaults(func=cmd_run)
