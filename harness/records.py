"""The results store: one JSON record per run under ``<results>/runs/<key>.json``.

A record (``schema`` 1) holds everything a report needs, so reports never train:

```
key, sweep, variant (label in the sweep), factor (the axis a one-factor variant changes,
"baseline" for the baseline, null otherwise), is_baseline, seed,
spec: {arch, data, protocol, measure, seed}        -- the RunSpec; key = hash of it
status: ok | failed | diverged, error: one line or null, traceback (failed runs only),
started, finished, time_s,
data: {name, key, layout, root, n_images, num_classes, class_values, in_channels,
       split_sizes: {train, val, test}, split_ids: {train: [ids], val: [ids], test: [ids]},
       image_size: {min_hw: [h, w], max_hw: [h, w]}}
train: {steps, best_step, best_val_dice, train_img_s, peak_mem_mb,
        history: [{step, loss, val_dice, lr, elapsed_s}]}
forms: [{form: "mean" | "L1".."L4",
         counts: {classes: [...], fields: [tp, fp, fn, tn], images: [test ids],
                  values: [[[tp, fp, fn, tn] per class] per image]},
         metrics: {dice, iou, dice_global, iou_global, fpr_empty, n_empty, n_images},
         cost: {params, macs, macs_size: [h, w] (the image predicted), input_size: [h, w]
                (what the model sees: larger for crop mode), infer_img_s, infer_img_s_iqr, infer_batch,
                latency_ms, latency_ms_iqr, peak_mem_mb},
         predictions: {ids: [...], shapes: [[h, w]...], data: [base64(zlib(uint8 map))]}}]
env: {device, device_name, threads, dtype, memory_format, python, torch, torchvision,
      smp, numpy, platform, git_commit}
```
Records are written atomically (a temporary file, then ``os.replace``), so a record that
exists is whole.
"""
from __future__ import annotations

import base64
import json
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

SCHEMA = 1
CSV_COLUMNS = [
    "sweep", "variant", "form", "seed", "status", "factor", "is_baseline",
    "dice", "iou", "dice_global", "iou_global", "fpr_empty", "n_empty", "n_images",
    "params", "macs", "infer_img_s", "infer_img_s_iqr", "latency_ms", "latency_ms_iqr",
    "train_img_s", "peak_mem_mb", "steps", "best_step", "best_val_dice", "time_s",
    "device_name", "threads", "arch", "key", "error",
]


def write_text_atomic(path: Path, text: str) -> None:
    """Write a temporary file beside ``path``, flush it to disk, then rename it over
    ``path``: a reader (or a rerun after a kill) sees the old file or the new one, whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, allow_nan=True))


def record_path(results: Path, key: str) -> Path:
    return Path(results) / "runs" / f"{key}.json"


def load_records(results: str | Path) -> list[dict]:
    """Every record under ``<results>/runs/``, sorted by variant, seed and key."""
    runs = Path(results) / "runs"
    if not runs.is_dir():
        raise ValueError(f"{results}: no runs/ folder (expected the output folder of `unet-ablate run`)")
    out = []
    for p in sorted(runs.glob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{p}: not a readable run record ({e.__class__.__name__})") from None
        if rec.get("schema") != SCHEMA:
            raise ValueError(f"{p}: record schema {rec.get('schema')!r}, expected {SCHEMA}")
        out.append(rec)
    if not out:
        raise ValueError(f"{runs}: no run records")
    return sorted(out, key=lambda r: (str(r["variant"]), r["seed"], r["key"]))


def rows(record: dict) -> list[dict]:
    """The tidy rows of one record: one per inference form (one row if it has none)."""
    train = record.get("train") or {}
    env = record.get("env") or {}
    base = {
        "sweep": record.get("sweep"), "variant": record["variant"], "seed": record["seed"],
        "status": record["status"], "factor": record.get("factor"),
        "is_baseline": bool(record.get("is_baseline")),
        "train_img_s": train.get("train_img_s"), "peak_mem_mb": train.get("peak_mem_mb"),
        "steps": train.get("steps"), "best_step": train.get("best_step"),
        "best_val_dice": train.get("best_val_dice"), "time_s": record.get("time_s"),
        "device_name": env.get("device_name"), "threads": env.get("threads"),
        "arch": _arch_name(record["spec"]["arch"]), "key": record["key"],
        "error": record.get("error"),
    }
    forms = record.get("forms") or []
    if not forms:
        return [{**base, "form": "mean"}]
    out = []
    for f in forms:
        cost = f.get("cost") or {}
        row = {**base, "form": f["form"], **(f.get("metrics") or {})}
        for k in ("params", "macs", "infer_img_s", "infer_img_s_iqr", "latency_ms", "latency_ms_iqr"):
            row[k] = cost.get(k)
        if cost.get("peak_mem_mb") is not None:
            row["peak_mem_mb"] = max(cost["peak_mem_mb"], row["peak_mem_mb"] or 0)
        out.append(row)
    return out


def _arch_name(d: dict) -> str:
    try:
        import variants
        return variants.from_dict(d).name
    except (ValueError, TypeError):
        return str(d)


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """The tidy table: one row per run and form, with every measured column."""
    df = pd.DataFrame([r for rec in records for r in rows(rec)])
    for c in CSV_COLUMNS:
        if c not in df:
            df[c] = np.nan
    rest = [c for c in df.columns if c not in CSV_COLUMNS]
    return df[CSV_COLUMNS + rest]


def counts_array(form: dict) -> np.ndarray:
    return np.asarray(form["counts"]["values"], dtype=np.int64)


def encode_map(a: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(a, dtype=np.uint8).tobytes(), 6)).decode()


def decode_map(data: str, shape) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(data)), dtype=np.uint8).reshape(shape)

