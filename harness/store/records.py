"""Run records: the one module that says what a run record is. The runner builds records
with ``new_record`` / ``add_training`` / ``add_form`` / ``end`` and writes them atomically to
``runs/<key>.json`` (``harness.store.layout``); the report reads them with ``load_records`` and the
accessors below; ``runs.csv`` is their tidy table (``harness.store.runs_table``: a row per run and form).
Plans are ``harness.store.sweep_plan``'s, samples ``harness.store.samples``'s, environments
``harness.store.environment``'s.

A record (``schema`` 3; records of schema 2, without ``image_metrics``, are read too, and
report the metrics their counts give; ``harness.store.record_types`` says the same as types,
``RunRecord`` and its sections, which ``check_record`` validates every record against):

```
schema, key (hash of spec), sweep, variant (label in the sweep), factor (the axis a one-factor
variant changes, "baseline" for the baseline, null otherwise), is_baseline, seed,
dataset (the data set's label in the sweep; records without it: the data's default label),
fold (k-fold: the test fold; null for a holdout split; records without it: null),
spec: {arch, data, protocol, measure, seed, fold (k-fold only)}        -- the RunSpec
status: ok | failed | diverged, error: one line or null, traceback (failed runs) or null,
cause: run | environment (a failed run: its own error, or a full disk / out of memory) or null,
started, finished, time_s,
data: {name, key, layout, root, n_images, num_classes, class_values, in_channels,
       split: holdout | kfold, fold, folds (k-fold: the fold and their number, else null),
       split_sizes: {train, val, test}, split_ids: {train: [ids], val: [ids], test: [ids]},
       image_size: {min_hw: [h, w], max_hw: [h, w]}}
train: null | {steps, best_step, best_val_dice, train_img_s, peak_mem_mb,
               history: [{step, loss, val_dice, val_score (selected_on not dice), lr, elapsed_s}],
               selected_on (the metric the weights were selected on, protocol.select),
               best_val_score (its validation value at best_step)
               (records written before selected_on: "dice", and best_val_dice),
               compile_s (protocol.compile: the first step, which compiles; else null),
               train_tflops (3 x 2 x MACs of the training input x train_img_s / 1e12),
               mfu (train_tflops over the GPU's dense bf16 peak, ``measure.PEAK_BF16_TFLOPS``;
                    null on CPU and on an unknown GPU)}
       (records written before compile_s, train_tflops and mfu lack them: read as null)
forms: [{form: "mean" | "L1".."L4",
         counts: {classes: [...], fields: [tp, fp, fn, tn], images: [test ids],
                  values: [[[tp, fp, fn, tn] per class] per image]},
         metrics: {dice, iou, dice_global, iou_global, fpr_empty, n_empty, n_images, and the
                   means of every metric of ``harness.metrics`` the run has},
         image_metrics: {thin_class (binary data, else null), nsd_tolerance, time_s,
                         values: {hd95, nsd, hd95_c<k>, nsd_c<k>, cldice, rand_f, vi: [per image]}},
         cost: {params, macs, macs_size: [h, w] (the image predicted), input_size: [h, w]
                (what the model sees: larger for crop mode), infer_img_s, infer_img_s_iqr,
                infer_batch, latency_ms, latency_ms_iqr, peak_mem_mb},
         predictions: {ids: [...], shapes: [[h, w]...], data: [base64(zlib(uint8 map))]}}]
env: {device, device_name, threads, cpu_count, dtype, memory_format, python, torch,
      torchvision, smp, numpy, platform, git_commit,
      scipy, scikit-image, monai, pandas, thop, tifffile, pillow (versions; null: not installed),
      submitit (its version when a submitit job ran the run, else null),
      cuda: null (CPU) | {runtime, cudnn, driver, tf32_matmul, tf32_cudnn,
                          float32_matmul_precision, cudnn_benchmark, cudnn_deterministic,
                          deterministic_algorithms}}
      (records written before the package versions and cuda lack them: read as unknown)
```
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast, get_args

import numpy as np

from ..config import NAME, default_label
from ..fileio import write_json_atomic
from ..metrics import FIELDS, metric, nanmean, per_image_from_counts, summarize
from .layout import Layout
from .record_types import FormEntry, RunRecord, Status, TrainSection, problem

if TYPE_CHECKING:
    from ..spec.protocol import RunSpec
    from ..training.train import FitResult

log = logging.getLogger("unet_ablate")

SCHEMA = 3
READABLE = (2, 3)  # schema 2: no image_metrics
STATUSES: tuple[str, ...] = get_args(Status)  # ok, failed, diverged
CAUSES = ("run", "environment")  # why a run failed: its own error, or the machine's (disk, memory)
TRAIN_REQUIRED = ("steps", "best_step", "best_val_dice", "train_img_s", "peak_mem_mb", "history")
TRAIN_ADDED = ("compile_s", "train_tflops", "mfu", "selected_on", "best_val_score")  # see _read_train
TRAIN_KEYS = TRAIN_REQUIRED + TRAIN_ADDED


def mac_convention(image: str = "one image") -> str:
    """What a record's ``cost.macs`` counts (``training.cost``), as every table and command
    states it."""
    return f"MACs: convolutions and matmuls only (FlopCounterMode), {image}; FLOPs = 2 x MACs"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- building

@dataclass(frozen=True)
class Labels:
    """How a sweep names a run: its sweep, variant label, the factor it changes and the
    label of its data set."""
    sweep: str
    variant: str
    factor: str | None = None
    is_baseline: bool = False
    dataset: str = ""
    tuning: dict | None = None  # a candidate of [tune]: {"values": {field: value}, "by": ...}

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def new_record(rs: RunSpec, labels: Labels, data: dict, env: dict) -> RunRecord:
    """The record of a run that is starting: status ``failed`` until ``end`` says otherwise,
    so that a run that dies half-way is never recorded as ok."""
    # spec, data and env are built as plain dicts elsewhere; check_record checks them on reading
    return cast(RunRecord, {
        "schema": SCHEMA, "key": rs.key, **labels.as_dict(), "seed": rs.seed, "fold": rs.fold,
        "spec": rs.to_dict(), "status": "failed", "error": None, "traceback": None,
        "started": _now(), "finished": None, "time_s": None, "data": data, "train": None,
        "forms": [], "env": env})


def add_training(record: RunRecord, fit_result: FitResult) -> None:
    """The training section from a ``harness.training.train.FitResult``."""
    record["train"] = cast(TrainSection, {k: getattr(fit_result, k) for k in TRAIN_KEYS})


def add_form(record: RunRecord, form: str, counts: np.ndarray, classes: list[int], images: list[str],
             cost: dict, predictions: list[np.ndarray], keep: int, image_metrics: dict) -> None:
    """One inference form: per-image, per-class counts (images, classes, 4), the whole-map
    metrics per image (``evaluate.image_scores``), the run-level means of both, its cost,
    and the first ``keep`` predicted class maps."""
    means = {k: nanmean(v) for k, v in image_metrics["values"].items()}
    record["forms"].append(cast(FormEntry, {  # metrics, image_metrics and cost: plain dicts
        "form": form,
        "counts": {"classes": list(classes), "fields": list(FIELDS), "images": list(images),
                   "values": np.asarray(counts).tolist()},
        "metrics": {**summarize(counts), **means},
        "image_metrics": image_metrics,
        "cost": cost,
        "predictions": {"ids": list(images[:keep]), "shapes": [list(p.shape) for p in predictions[:keep]],
                        "data": [encode_map(p) for p in predictions[:keep]]},
    }))


def end(record: RunRecord, started: float, finished: float, status: str, error: str | None = None,
        traceback: str | None = None, cause: str | None = None) -> None:
    """Close a record: its status, error text, wall time (``perf_counter`` values) and, for a
    failed run, its cause (``CAUSES``: the run itself, or its environment)."""
    if status not in STATUSES:
        raise ValueError(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
    if cause not in (None, *CAUSES):
        raise ValueError(f"cause: expected one of {', '.join(CAUSES)}, got {cause!r}")
    record.update({"status": cast(Status, status), "error": error, "traceback": traceback, "finished": _now(),
                   "time_s": finished - started, "cause": cause})


# --------------------------------------------------------------------------- reading

def check_record(rec: object, where: str) -> RunRecord:
    """``rec`` if it is a record of this schema (``RunRecord``), else a one-line ValueError
    naming ``where``."""
    def bad(what: str) -> NoReturn:
        raise ValueError(f"{where}: not a run record of schema {' or '.join(map(str, READABLE))}: {what}")

    if not isinstance(rec, dict):
        bad(f"JSON {json.dumps(rec)[:20]} where a record object belongs")
    if "schema" not in rec:
        bad("no schema key")
    if rec["schema"] not in READABLE:
        bad(f"it has schema {rec.get('schema')!r} (written by another version; run the sweep again)")
    if wrong := problem(rec, RunRecord) or values_problem(rec):
        bad(wrong)
    if rec["schema"] >= 3 and (i := next((i for i, f in enumerate(rec["forms"]) if "image_metrics" not in f),
                                         None)) is not None:
        bad(f"forms[{i}].image_metrics is missing")
    if not rec.get("dataset"):  # written before data sets had labels
        rec["dataset"] = default_label(rec["data"]["name"], rec["data"]["root"])
    # names that become paths (report folders, record and samples files): never a path
    for name, value in (("key", rec["key"]), ("dataset", rec["dataset"]), ("data.key", rec["data"]["key"])):
        if not (isinstance(value, str) and NAME.fullmatch(value)):
            bad(f"{name} {value!r} is not a plain name (letters, digits, '.', '_', '-'), so it names no file")
    rec.setdefault("fold", rec["spec"].get("fold"))
    if rec["train"] is not None:
        _read_train(rec["train"])
    return cast(RunRecord, rec)


UNIT = ("dice_global", "iou_global", "fpr_empty")  # form metrics in [0, 1] beside the registered ones
COUNTS = ("n_empty", "n_images")                   # ... and counts of images


def _outside(name: str, values: np.ndarray) -> bool:
    """Values of metric ``name`` outside its range: infinite, or below 0, or above 1 for a
    score where higher is better (Dice, IoU, NSD, clDice, Rand F); NaN is an image the metric
    leaves out. An unknown name is not checked."""
    try:
        unit = name in UNIT or (name not in COUNTS and metric(name).higher_is_better)
    except ValueError:
        return False
    v = values[~np.isnan(values)]
    return bool(np.isinf(v).any() or (v < 0).any() or (unit and (v > 1).any()))


def _numbers(values: Any) -> np.ndarray | None:
    """``values`` as floats (null: NaN), None where any is not a number."""
    try:
        a = np.asarray([np.nan if v is None else v for v in values] if isinstance(values, list) else values)
    except (TypeError, ValueError):  # a ragged list
        return None
    return a.astype(float) if a.dtype.kind in "iuf" else None  # never text ("7") or true/false


def values_problem(rec: dict) -> str | None:
    """What is wrong with the numbers of a record whose types are right: counts that are not
    whole numbers >= 0 of shape (images, classes, fields), or whose classes count different
    numbers of pixels in one image; a metric or per-image value outside its range."""
    for i, f in enumerate(rec["forms"]):
        where, c = f"forms[{i}]", f["counts"]
        a = _numbers(c["values"])
        shape = (len(c["images"]), len(c["classes"]), len(c["fields"]))
        if a is None or a.shape != shape:
            return f"{where}.counts.values: expected numbers of shape {shape} (images, classes, fields)"
        if a.size and (not np.isfinite(a).all() or (a < 0).any() or (a != np.round(a)).any()):
            return f"{where}.counts.values: a count that is not a whole number >= 0"
        if a.size and (a.sum(axis=2) != a.sum(axis=2)[:, :1]).any():
            return f"{where}.counts.values: the classes of one image count different numbers of pixels"
        named = [(f"{where}.metrics.{k}", k, v) for k, v in f["metrics"].items()]
        named += [(f"{where}.image_metrics.values.{k}", k, v)
                  for k, v in ((f.get("image_metrics") or {}).get("values") or {}).items()]
        for path, name, v in named:
            if (n := _numbers(v)) is None or _outside(name, np.atleast_1d(n)):
                return f"{path} is {str(v)[:40]} (outside the range of {name}, or not a number)"
    return None


def _read_train(train: dict[str, Any]) -> None:
    """Fill the keys a record written before them lacks: its weights were selected on
    validation Dice; the other added keys are null (unknown)."""
    if "selected_on" not in train:
        train["selected_on"], train["best_val_score"] = "dice", train["best_val_dice"]
    for key in TRAIN_ADDED:
        train.setdefault(key, None)


def read_record(path: Path, key: str | None = None) -> RunRecord:
    """One record (with ``key``: the record of that run, as ``runs/<key>.json`` must hold); a
    file that is not readable JSON or not a record is a one-line ValueError."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable run record ({e.__class__.__name__})") from None
    out = check_record(rec, str(path))
    if key is not None and out["key"] != key:
        raise ValueError(f"{path}: not the record of run {key}: it holds run {out['key']} (copied under "
                         f"another run's name?)")
    return out


def write_record(results: Path, record: RunRecord) -> Path:
    path = Layout(results).record(record["key"])
    write_json_atomic(path, record)
    return path


def load_records(results: str | Path, keys: Iterable[str] | None = None,
                 skipped: list[str] | None = None) -> list[RunRecord]:
    """The records under ``<results>/runs/`` (only those of ``keys`` when given), sorted by
    variant, seed and key. A file that is not a run record (``[]``, ``{}``, another schema,
    half a file written by hand) is left out with a warning, and its one-line reason
    appended to ``skipped``."""
    runs = Layout(results).runs
    if not runs.is_dir():
        raise ValueError(f"{results}: no runs/ folder (expected the output folder of `unet-ablate run`)")
    paths = sorted(runs.glob("*.json"))
    if keys is not None:
        wanted = set(keys)
        paths = [p for p in paths if p.stem in wanted]
    out = []
    for p in paths:
        try:
            out.append(read_record(p, p.stem))
        except ValueError as e:
            reason = str(e).splitlines()[0]
            log.warning("%s; left out", reason)
            if skipped is not None:
                skipped.append(reason)
    if not out:
        raise ValueError(f"{runs}: no run records" + (" of the sweep in sweep.json" if keys is not None else "")
                         + (f" ({len(paths)} file(s) that are not run records)" if paths else ""))
    return sorted(out, key=lambda r: (r["variant"], r["seed"], r["key"]))


def stray_records(results: str | Path, keys: Iterable[str]) -> list[str]:
    """Record files in ``<results>/runs/`` that are not runs of ``keys`` (another sweep's)."""
    wanted = set(keys)
    return [p.name for p in sorted(Layout(results).runs.glob("*.json")) if p.stem not in wanted]


def find_form(record: RunRecord, form: str) -> FormEntry | None:
    return next((f for f in record["forms"] if f["form"] == form), None)


def ok_forms(records: Iterable[RunRecord], variant: str, form: str = "mean") -> Iterator[tuple[RunRecord, FormEntry]]:
    """(record, form entry) of every ok run of ``variant`` that has ``form``, in record order."""
    for r in records:
        if r["variant"] == variant and r["status"] == "ok":
            f = find_form(r, form)
            if f is not None:
                yield r, f


def counts_array(form: FormEntry) -> np.ndarray:
    """Counts (images, classes, 4) of one form entry, fields in ``FIELDS`` order."""
    return np.asarray(form["counts"]["values"], dtype=np.int64)


def per_image(form: FormEntry, name: str) -> np.ndarray | None:
    """Per-image values of metric ``name`` (``harness.metrics``) of one form entry, in the
    order of ``image_ids``; None where the record does not have it (an older schema, or a
    metric of binary data on multi-class data). NaN: an image the metric leaves out."""
    found = form.get("image_metrics")  # schema 2: none
    values = found["values"] if found else {}
    if name in values:
        v = np.asarray(values[name], dtype=float)
        if v.shape != (len(form["counts"]["images"]),):
            raise ValueError(f"image_metrics.values.{name}: {v.size} values for "
                             f"{len(form['counts']['images'])} test images")
        return v
    try:
        if not metric(name).from_counts:
            return None
        return per_image_from_counts(counts_array(form), name)
    except ValueError:  # an unknown name, or a class these counts do not have
        return None


def image_ids(form: FormEntry) -> list[str]:
    return [str(i) for i in form["counts"]["images"]]


def predicted_maps(form: FormEntry) -> dict[str, np.ndarray]:
    """The stored predicted class maps of one form entry, by test image id."""
    p = form["predictions"]
    return {str(i): decode_map(d, s) for i, s, d in zip(p["ids"], p["shapes"], p["data"])}


def history(record: RunRecord) -> list[dict[str, Any]]:
    return record["train"]["history"] if record["train"] else []


def encode_map(a: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(a, dtype=np.uint8).tobytes(), 6)).decode()


def decode_map(data: str, shape: Sequence[int]) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(data)), dtype=np.uint8).reshape(shape)
