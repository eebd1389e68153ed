"""``runs.csv``: the tidy table of the run records, one row per run and inference form
(``runs_frame``), with every measured column (``CSV_COLUMNS`` first)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import variants

from ..fileio import write_text_atomic
from .layout import Layout
from .records import TRAIN_KEYS

COST_COLUMNS = ("params", "macs", "infer_img_s", "infer_img_s_iqr", "latency_ms", "latency_ms_iqr")
CSV_COLUMNS = [
    "sweep", "dataset", "variant", "form", "seed", "fold", "status", "factor", "is_baseline",
    "dice", "iou", "dice_global", "iou_global", "fpr_empty", "n_empty", "n_images",
    *COST_COLUMNS, "train_img_s", "train_tflops", "mfu", "compile_s", "peak_mem_mb", "steps", "best_step",
    "best_val_dice", "selected_on", "best_val_score", "time_s",
    "device_name", "threads", "arch", "key", "error",
]


def rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The tidy rows of one record: one per inference form (one row if it has none)."""
    train = record["train"] or dict.fromkeys(TRAIN_KEYS)  # null: the run failed before training
    env = record["env"]
    base = {
        "sweep": record["sweep"], "dataset": record["dataset"], "variant": record["variant"],
        "seed": record["seed"], "fold": record["fold"],
        "status": record["status"], "factor": record["factor"], "is_baseline": record["is_baseline"],
        **{k: train.get(k) for k in ("train_img_s", "train_tflops", "mfu", "compile_s", "peak_mem_mb", "steps",
                                     "best_step", "best_val_dice", "selected_on", "best_val_score")},
        "time_s": record["time_s"], "device_name": env["device_name"], "threads": env["threads"],
        "arch": variants.from_dict(record["spec"]["arch"]).name, "key": record["key"],
        "error": record["error"],
    }
    if not record["forms"]:
        return [{**base, "form": "mean"}]
    out = []
    for f in record["forms"]:
        cost = f["cost"]
        row = {**base, "form": f["form"], **f["metrics"], **{k: cost[k] for k in COST_COLUMNS}}
        if cost["peak_mem_mb"] is not None:
            row["peak_mem_mb"] = max(cost["peak_mem_mb"], row["peak_mem_mb"] or 0)
        out.append(row)
    return out


def form_key(form: str) -> tuple:
    """Sort order of inference forms: "mean" first, then L1..L4."""
    return (form != "mean", str(form))


def runs_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The tidy table: one row per run and form (k-fold: per fold), with every measured
    column, ordered by data set, variant, form, seed, fold and key."""
    table = sorted((r for rec in records for r in rows(rec)),
                   key=lambda r: (r["dataset"], r["variant"], form_key(r["form"]), r["seed"],
                                  -1 if r["fold"] is None else r["fold"], r["key"]))
    df = pd.DataFrame(table)
    for c in CSV_COLUMNS:
        if c not in df:
            df[c] = np.nan
    rest = [c for c in df.columns if c not in CSV_COLUMNS]
    return df[CSV_COLUMNS + rest]


def write_runs_csv(results: Path, records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    df = runs_frame(records)
    write_text_atomic(Layout(results).runs_csv, df.to_csv(index=False))
    return df


def summary_text(df) -> str:
    """The console summary of a sweep: one line per (data set of a suite, variant, form),
    means over ok runs (seeds, and folds). (The report's statistics come from ``unet-ablate
    report``.)"""
    ok = df[df.status == "ok"]
    if ok.empty:
        return "no run finished"
    by = ["dataset", "variant", "form"] if df["dataset"].nunique() > 1 else ["variant", "form"]
    g = ok.groupby(by, sort=False)
    t = g.agg(dice=("dice", "mean"), dice_std=("dice", "std"), params=("params", "first"),
              macs=("macs", "first"), infer_img_s=("infer_img_s", "median"), train_img_s=("train_img_s", "median"))
    t["runs"] = df.groupby(by, sort=False).apply(
        lambda x: f"{(x.status == 'ok').sum()}/{len(x)}", include_groups=False)
    t["Dice"] = [f"{d:.4f} ± {s:.4f}" if s == s else f"{d:.4f}" for d, s in zip(t.dice, t.dice_std)]
    t["params (M)"] = (t.params / 1e6).round(3)
    t["GMACs"] = (t.macs / 1e9).round(3)
    t["infer img/s"] = t.infer_img_s.round(1)
    t["train img/s"] = t.train_img_s.round(1)
    return t[["runs", "Dice", "params (M)", "GMACs", "infer img/s", "train img/s"]].to_string()
