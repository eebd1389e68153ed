"""The statistics of the report: one summary row per (variant, form), computed from records.

Pure functions: records in, numbers out; no files, no plots.

* Accuracy per row: mean and sample standard deviation (ddof=1) over the runs (seeds)
  whose status is ``ok``; failed and diverged runs are counted, never silently dropped.
* Difference to the baseline (the ``is_baseline`` variant, form ``mean``): per test
  image, the image's Dice averaged over the ok seeds, minus the same for the baseline
  (images paired by test id). Mean difference, a paired bootstrap 95% interval
  (resampling images; BCa, percentile where BCa is undefined), the Wilcoxon
  signed-rank p-value (1.0 when every difference is zero), and the Holm step-down
  correction across every non-baseline row.
* Cost per row: medians over ok seeds (peak memory: the maximum).
"""
from __future__ import annotations

import numbers
import warnings
from collections import Counter

import numpy as np
import pandas as pd
from scipy import stats

from ..metrics import per_image_dice
from ..records import counts_array, form_key, image_ids, ok_forms, runs_frame

ALPHA = 0.05
N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0

SUMMARY_COLUMNS = [
    "variant", "form", "factor", "is_baseline", "arch", "status", "n_ok", "n_total",
    "n_failed", "n_diverged",
    "dice_mean", "dice_std", "iou_mean", "iou_std", "dice_global_mean", "dice_global_std",
    "fpr_empty_mean", "n_empty", "n_images",
    "delta", "ci_low", "ci_high", "n_pairs", "p_wilcoxon", "p_holm", "significant",
    "params_m", "gmacs", "macs_size", "infer_img_s", "infer_batch", "latency_ms",
    "train_img_s", "peak_mem_mb",
]


# --------------------------------------------------------------------------- tests

def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries are left out (and stay NaN).

    With the m finite p-values sorted ascending, p_(i) becomes
    max_{j <= i} min(1, (m - j + 1) p_(j)) (1-based i, j)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def wilcoxon_p(diff) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (scipy defaults).

    1.0 when every difference is zero (scipy leaves that case undefined); NaN with no data."""
    d = np.asarray(diff, dtype=float)
    if d.size == 0:
        return float("nan")
    if np.all(d == 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample / ties notes
        return float(stats.wilcoxon(d).pvalue)


def bootstrap_ci(diff, level: float = 0.95, n_resamples: int = N_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Bootstrap interval of the mean of ``diff`` (resampling its entries, i.e. images).

    BCa with a fixed RNG; percentile where BCa is undefined; (d, d) when every entry is
    d (every resample has that mean); NaN with fewer than two entries."""
    d = np.asarray(diff, dtype=float)
    if d.size < 2:
        return float("nan"), float("nan")
    if np.ptp(d) == 0:
        return float(d[0]), float(d[0])
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate-data warnings: handled below
            ci = stats.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=level,
                                 method=method, rng=np.random.default_rng(seed)).confidence_interval
        if np.isfinite(ci.low) and np.isfinite(ci.high):
            return float(ci.low), float(ci.high)
    return float("nan"), float("nan")


def paired_difference(diff) -> dict:
    """Mean, 95% bootstrap interval and Wilcoxon p of per-image differences."""
    d = np.asarray(diff, dtype=float)
    low, high = bootstrap_ci(d)
    return {"delta": float(d.mean()) if d.size else float("nan"), "ci_low": low, "ci_high": high,
            "n_pairs": int(d.size), "p_wilcoxon": wilcoxon_p(d)}


def pareto_front(cost, value, minimize_cost: bool = True) -> np.ndarray:
    """Boolean mask of the points no other point dominates (value is maximized; cost is
    minimized, or maximized with ``minimize_cost=False``). Non-finite points are off it."""
    c = np.asarray(cost, dtype=float) * (1 if minimize_cost else -1)
    v = np.asarray(value, dtype=float)
    ok = np.isfinite(c) & np.isfinite(v)
    front = np.zeros(c.shape, dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        front[i] = not dominated.any()
    return front


# --------------------------------------------------------------------------- records

def natural_key(x) -> tuple:
    """Numbers before text, numbers by value (seeds 2 < 10), text as text."""
    if isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)):
        return (0, float(x), "")
    return (1, 0.0, str(x))


def baseline_variant(records: list[dict]) -> str | None:
    """The variant flagged ``is_baseline``, or None."""
    flagged = sorted({r["variant"] for r in records if r["is_baseline"]})
    return flagged[0] if flagged else None


def variant_order(records: list[dict], baseline: str | None, order=None) -> list[str]:
    """Variants in the sweep file's order when given (others appended, sorted), else the
    baseline first and the rest sorted by name."""
    present = sorted({r["variant"] for r in records})
    listed = [v for v in (order or []) if v in present]
    if not listed and baseline in present:
        listed = [baseline]
    return listed + [v for v in present if v not in listed]


def status_text(counts: Counter) -> str:
    """"2/3 ok (1 failed)" from a Counter of run statuses."""
    n, ok = sum(counts.values()), counts.get("ok", 0)
    others = sorted(s for s in counts if s != "ok")
    rest = ", ".join(f"{counts[s]} {s}" for s in others)
    return f"{ok}/{n} ok" + (f" ({rest})" if rest else "")


def per_image_dice_by_id(records: list[dict], variant: str, form: str = "mean") -> pd.Series:
    """Per-test-image Dice of one (variant, form), averaged over its ok seeds; index = id."""
    columns = [pd.Series(per_image_dice(counts_array(f)), index=image_ids(f))
               for _, f in ok_forms(records, variant, form)]
    if not columns:
        return pd.Series(dtype=float)
    return pd.concat(columns, axis=1).mean(axis=1).sort_index()


def _macs_size(records: list[dict], variant: str, form: str) -> str | None:
    sizes = sorted({tuple(f["cost"]["macs_size"]) for _, f in ok_forms(records, variant, form)})
    return ", ".join("x".join(str(int(v)) for v in s) for s in sizes) or None


def _infer_batch(records: list[dict], variant: str, form: str) -> float:
    values = [f["cost"]["infer_batch"] for _, f in ok_forms(records, variant, form)]
    return float(np.median(values)) if values else float("nan")


def _mean_std(s: pd.Series) -> tuple[float, float]:
    s = pd.to_numeric(s, errors="coerce").dropna()
    if s.empty:
        return float("nan"), float("nan")
    return float(s.mean()), (float(s.std(ddof=1)) if len(s) > 1 else float("nan"))


def _median(s: pd.Series) -> float:
    s = pd.to_numeric(s, errors="coerce").dropna()
    return float(s.median()) if not s.empty else float("nan")


def summary_table(records: list[dict], baseline: str | None = None, order=None) -> pd.DataFrame:
    """One row per (variant, form) with accuracy, difference to the baseline and cost.

    Rows follow ``variant_order``; within a variant "mean" comes first, then L1..L4. A
    variant whose every run failed still has its "mean" row (with NaN numbers)."""
    frame = runs_frame(records)
    frame["variant"] = frame["variant"].astype(str)
    base = per_image_dice_by_id(records, baseline, "mean") if baseline else pd.Series(dtype=float)
    rows = []
    for v in variant_order(records, baseline, order):
        statuses = Counter(r["status"] for r in records if r["variant"] == v)
        runs = frame[frame["variant"] == v]
        for form in sorted(runs["form"].unique(), key=form_key):
            g = runs[runs["form"] == form]
            ok = g[g["status"] == "ok"]
            first = g.iloc[0]
            row = {
                "variant": v, "form": form, "factor": first["factor"],
                "is_baseline": v == baseline and form == "mean", "arch": first["arch"],
                "status": status_text(statuses), "n_ok": int(len(ok)),
                "n_total": int(sum(statuses.values())),
                "n_failed": statuses.get("failed", 0), "n_diverged": statuses.get("diverged", 0),
            }
            for m in ("dice", "iou", "dice_global"):
                row[f"{m}_mean"], row[f"{m}_std"] = _mean_std(ok[m])
            has_empty = ok[pd.to_numeric(ok["n_empty"], errors="coerce").fillna(0) > 0]
            row["fpr_empty_mean"] = _mean_std(has_empty["fpr_empty"])[0]
            row["n_empty"] = _median(ok["n_empty"])
            row["n_images"] = _median(ok["n_images"])
            if row["is_baseline"] or base.empty:
                row.update(delta=np.nan, ci_low=np.nan, ci_high=np.nan, n_pairs=0, p_wilcoxon=np.nan)
            else:
                mine = per_image_dice_by_id(records, v, form)
                common = mine.index.intersection(base.index).sort_values()
                row.update(paired_difference((mine[common] - base[common]).to_numpy()))
            row["params_m"] = _median(ok["params"]) / 1e6
            row["gmacs"] = _median(ok["macs"]) / 1e9
            row["macs_size"] = _macs_size(records, v, form)
            row["infer_img_s"] = _median(ok["infer_img_s"])
            row["infer_batch"] = _infer_batch(records, v, form)
            row["latency_ms"] = _median(ok["latency_ms"])
            row["train_img_s"] = _median(ok["train_img_s"])
            mem = pd.to_numeric(ok["peak_mem_mb"], errors="coerce").dropna()
            row["peak_mem_mb"] = float(mem.max()) if not mem.empty else float("nan")
            rows.append(row)
    out = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c not in ("p_holm", "significant")])
    out["p_holm"] = holm(out["p_wilcoxon"].to_numpy(dtype=float))
    out["significant"] = out["p_holm"] < ALPHA
    return out[SUMMARY_COLUMNS].reset_index(drop=True)
