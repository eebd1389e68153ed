"""The summary table: one row per (variant, inference form), from the records and the plan.

* Run accounting per row: planned (from ``sweep.json``), ok, failed, diverged, missing
  (planned with no record); a run is one seed (and, with k-fold cross-validation, one
  fold). Failed and diverged runs are outcomes: the failure rate and a sensitivity column
  in which such a run scores Dice 0 ("fail = 0").
* K-fold cross-validation pools the test folds: each seed's scores are those of every
  fold's test images, so every image counts once per seed, in the means as in the tests.
* Accuracy: mean and sample standard deviation (ddof = 1) over the ok seeds, each seed's
  value from its pooled test images.
* Δ of every row against its reference, per declared family (``family_of``): one-factor
  ablations, grid points, explicit variants and smp baselines against the baseline; a
  pruned deep-supervision form L1..Lk against its own network's accurate ("mean") form.
  Δ is the mean per-image value of the headline metric (Dice unless ``--metric`` names
  another of ``harness.metrics``) over seeds and test images minus the reference's, over
  the images both arms scored with every seed (an image a metric leaves out, NaN, is
  dropped from the pair). Its interval, test and MDE come from one model,
  ``stats.seed_model`` (the paired differences, seeds x images; k-fold: (seed, fold)
  units), at the Bonferroni level 1 - alpha/m of its family of m rows (m counts every
  declared row, tested or not); the two-stage bootstrap of ``stats.hierarchical_bootstrap``
  and the sign-flip test over images stand beside it, exploratory. A verdict needs at least
  ``MIN_SEEDS`` ok seeds in both arms and the same seeds in both: "different" a Holm-adjusted
  p below alpha within the family and an interval not within the margin, "equivalent" an
  interval within it (``verdict``), at ``ReportSettings.margin_for`` the metric.
* Cost: medians over ok seeds (peak memory: the maximum); training MFU where the device's
  peak is known (``measure.PEAK_BF16_TFLOPS``).
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from ..metrics import class_of, summarize
from ..metrics import metric as metric_info
from ..spec.settings import ReportSettings
from ..store.records import counts_array, image_ids, ok_forms, per_image
from ..store.runs_table import form_key, runs_frame
from .labels import BAD, _seeds_text, family_of, natural_key, status_text, variant_order
from .stats import ALPHA, hierarchical_bootstrap, holm, seed_model, signflip_p

MIN_SEEDS = 3
MOST_SEEDS = 100  # how far seeds_needed looks

SUMMARY_COLUMNS = [
    "variant", "form", "factor", "family", "reference", "is_baseline", "arch", "status",
    "n_planned", "n_ok", "n_failed", "n_diverged", "n_missing", "fail_rate",
    "dice_mean", "dice_std", "iou_mean", "iou_std", "dice_global_mean", "dice_global_std",
    "fail0_mean", "fail0_std", "fpr_empty_mean", "n_empty", "n_images",
    "metric", "higher_is_better", "delta", "ci_low", "ci_high", "ci_level", "ci_method", "se", "se_fixed", "df", "mde",
    "margin", "verdict", "seeds_needed", "boot_low", "boot_high", "boot_method", "n_seeds", "n_pairs",
    "n_dropped", "p_images", "p_seeds", "p", "family_size", "p_holm", "significant", "disagree", "test_note",
    "params_m", "gmacs", "macs_size", "infer_img_s", "infer_batch", "latency_ms",
    "train_img_s", "mfu", "peak_mem_mb",
]
COMPARISON = {"delta": np.nan, "ci_low": np.nan, "ci_high": np.nan, "ci_level": np.nan,
              "ci_method": "", "se": np.nan, "se_fixed": np.nan, "df": np.nan, "mde": np.nan, "seeds_needed": np.nan,
              "boot_low": np.nan, "boot_high": np.nan, "boot_method": "",
              "n_seeds": 0, "n_pairs": 0, "n_dropped": 0, "p_images": np.nan,
              "p_seeds": np.nan, "p": np.nan, "test_note": ""}


# --------------------------------------------------------------------------- arms and comparisons

def _by_seed(records: list[dict], variant: str, form: str, value) -> dict[int, list]:
    """seed -> ``value(form entry)`` of each ok run of (variant, form) (k-fold: one per
    fold), leaving out the runs where it is None."""
    out: dict = {}
    for r, f in ok_forms(records, variant, form):
        v = value(f)
        if v is not None:
            out.setdefault(r["seed"], []).append(v)
    return out


def seed_scores(records: list[dict], variant: str, form: str = "mean",
                metric: str = "dice") -> dict[int, pd.Series]:
    """Per-image values of ``metric`` of every ok seed of (variant, form) whose records have
    it: seed -> Series by test id (k-fold: the test images of every ok fold of the seed,
    pooled), without the images the metric leaves out (NaN)."""
    def scores(f):
        values = per_image(f, metric)
        return None if values is None else pd.Series(values, index=image_ids(f)).dropna()

    out = {}
    for seed, series in _by_seed(records, variant, form, scores).items():
        pooled = pd.concat(series) if len(series) > 1 else series[0]
        out[seed] = pooled[~pooled.index.duplicated(keep="last")]
    return out


def seed_summaries(records: list[dict], variant: str, form: str = "mean") -> dict[int, dict]:
    """``metrics.summarize`` of the pooled counts of every ok seed of (variant, form)
    (one run's counts, or with k-fold, every ok fold's): seed -> run-level metrics."""
    return {seed: summarize(np.concatenate(c))
            for seed, c in _by_seed(records, variant, form, counts_array).items()}


def has_metric(records: list[dict], metric: str) -> bool:
    """Whether some ok run's record holds ``metric`` (older records lack image metrics)."""
    return any(per_image(f, metric) is not None for r in records if r["status"] == "ok"
               for f in r["forms"])


def check_metric(records: list[dict], metric: str, where: str = "") -> None:
    """A one-line ValueError where ``metric`` is unknown, or ok runs of ``records`` exist and
    none holds it (records without an ok run get a report of their failures)."""
    info = metric_info(metric)
    ok = [r for r in records if r["status"] == "ok"]
    if ok and not has_metric(records, metric):
        raise ValueError(f"{where}metric {metric!r}: no ok run of these records has it ({_why_missing(ok, info)})")


def _why_missing(ok: list[dict], info) -> str:
    """Why ok records lack a metric: the class it names, binary data, or their schema."""
    per_class = class_of(info.name)
    held = sorted({name for r in ok for f in r["forms"] for name in
                   (*((f.get("image_metrics") or {}).get("values") or {}), *f["metrics"])
                   if (c := class_of(name)) is not None and c[0] == per_class[0]}) if per_class else []
    base = per_class[0] if per_class else info.name
    if held:
        return f"these records score {base} of the classes {', '.join(held)} only"
    if info.binary_only and not any(len(f["counts"]["classes"]) == 1 for r in ok for f in r["forms"]):
        return f"{info.name} needs binary data"
    if not info.from_counts and all(r["schema"] == 2 for r in ok):
        return "records of schema 2 hold only the metrics of their counts"
    return "records of schema 2 hold only the metrics of their counts; binary-only metrics need binary data"


def shown_metrics(records: list[dict], metric: str) -> list[str]:
    """The metrics the table shows next to the headline: Dice, and for binary data the
    thin-structure Dice and the ISBI Rand F-score, where the records have them."""
    binary = any(len(f["counts"]["classes"]) == 1 for r in records for f in r["forms"])
    wanted = ["dice", *(("dice_thin", "rand_f") if binary else ())]
    return list(dict.fromkeys([metric, *(m for m in wanted if has_metric(records, m))]))


def per_image_dice_by_id(records: list[dict], variant: str, form: str = "mean") -> pd.Series:
    """Per-test-image Dice of one (variant, form), averaged over its ok seeds; index = id."""
    columns = list(seed_scores(records, variant, form).values())
    return pd.concat(columns, axis=1).mean(axis=1).sort_index() if columns else pd.Series(dtype=float)


def expected_verdict(model, level: float, margin: float) -> str:
    """What a row at these variances would conclude if its true Δ were the observed one:
    "different" when the test finds |Δ| with 80% power (its minimum detectable effect at
    most |Δ|) and |Δ| exceeds the margin, "equivalent" when the interval lies within
    ±margin, else "inconclusive"."""
    low, high = model.interval(level)
    if model.mde(level) <= abs(model.mean) and abs(model.mean) > margin:
        return "different"
    if -margin <= low and high <= margin:
        return "equivalent"
    return "inconclusive"


def seeds_needed(model, seeds: int, level: float, margin: float, most: int = MOST_SEEDS) -> int | None:
    """The fewest seeds (up to ``most``) at which a row, at its observed Δ and variances,
    would be conclusive (``expected_verdict``); None beyond ``most``."""
    for n in range(seeds + 1, most + 1):
        if expected_verdict(model.scaled(n, seeds), level, margin) != "inconclusive":
            return n
    return None


def compare(mine: dict, ref: dict, ref_label: str, level: float, groups: dict | None,
            margin: float) -> dict:
    """Δ of one arm against its reference (both: seed -> per-image Series), with the seed
    model's interval, test and minimum detectable effect (``groups``: image id -> k-fold
    test fold, for (seed, fold) units), the bootstrap's interval beside it, image and seed
    counts, per-seed Δ and, where no test is possible, why. Arms that ran the same seeds
    are paired by seed in the interval as in the test."""
    out = {**COMPARISON, "per_seed": {}}
    if not mine or not ref:
        out["test_note"] = "no ok run" if not mine else f"{ref_label}: no ok run"
        return out
    series = [*mine.values(), *ref.values()]
    common = sorted(set.intersection(*(set(s.index) for s in series)))
    union = set().union(*(set(s.index) for s in series))
    sa, sb = sorted(mine, key=natural_key), sorted(ref, key=natural_key)
    out.update(n_pairs=len(common), n_dropped=len(union) - len(common), n_seeds=min(len(sa), len(sb)))
    if not common:
        out["test_note"] = "no test image scored by every seed of both arms"
        return out
    ya = np.stack([mine[s][common].to_numpy(float) for s in sa])
    yb = np.stack([ref[s][common].to_numpy(float) for s in sb])
    out["delta"] = float(ya.mean() - yb.mean())
    out["per_seed"] = {s: float((mine[s][common] - ref[s][common]).mean()) for s in sa if s in ref}
    boot = hierarchical_bootstrap(ya, yb, level, paired=sa == sb)
    out.update(boot_low=boot.low, boot_high=boot.high, boot_method=boot.method)
    if len(sa) < MIN_SEEDS:
        out["test_note"] = f"{len(sa)} seed{'s' * (len(sa) != 1)}: too few to test"
    elif len(sb) < MIN_SEEDS:
        out["test_note"] = f"{ref_label} has {len(sb)} seed{'s' * (len(sb) != 1)}: too few to test"
    elif sa != sb:
        out["test_note"] = f"seeds {_seeds_text(sa)} differ from {ref_label}'s {_seeds_text(sb)}: not paired"
    elif (model := seed_model(ya - yb, [groups[i] for i in common] if groups else None)) is not None:
        low, high = model.interval(level)
        if groups:  # k-fold: Δ as the model estimates it, the mean of the folds' means
            out["delta"] = model.mean
        out.update(ci_low=low, ci_high=high, ci_level=level, ci_method="t", p=model.p, p_seeds=model.p,
                   p_images=signflip_p((ya - yb).mean(axis=0)), mde=model.mde(level), se=model.se,
                   se_fixed=float(np.sqrt(model.fixed_var)),
                   df=model.df, seeds_needed=seeds_needed(model, len(sa), level, margin))
    return out


# --------------------------------------------------------------------------- the table

def _mean_std(values) -> tuple[float, float]:
    s = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").dropna()
    if s.empty:
        return float("nan"), float("nan")
    return float(s.mean()), (float(s.std(ddof=1)) if len(s) > 1 else float("nan"))


def _median(s: pd.Series) -> float:
    s = pd.to_numeric(s, errors="coerce").dropna()
    return float(s.median()) if not s.empty else float("nan")


def _cost(ok: pd.DataFrame, records: list[dict], variant: str, form: str) -> dict:
    forms = [f for _, f in ok_forms(records, variant, form)]
    sizes = sorted({tuple(f["cost"]["macs_size"]) for f in forms})
    mem = pd.to_numeric(ok["peak_mem_mb"], errors="coerce").dropna()
    return {
        "params_m": _median(ok["params"]) / 1e6, "gmacs": _median(ok["macs"]) / 1e9,
        "macs_size": ", ".join("x".join(str(int(v)) for v in s) for s in sizes) or None,
        "infer_img_s": _median(ok["infer_img_s"]),
        "infer_batch": _median(pd.Series([f["cost"]["infer_batch"] for f in forms], dtype=float)),
        "latency_ms": _median(ok["latency_ms"]), "train_img_s": _median(ok["train_img_s"]),
        "mfu": _median(ok["mfu"]) if "mfu" in ok else float("nan"),
        "peak_mem_mb": float(mem.max()) if not mem.empty else float("nan"),
    }


def _accounting(records: list[dict], variant: str, planned: list | None) -> dict:
    """Planned / ok / failed / diverged / missing runs of one variant; ``planned``: the
    (seed, fold) of each planned run."""
    mine = [r for r in records if r["variant"] == variant]
    counts = Counter(r["status"] for r in mine)
    runs = set(planned) if planned is not None else {(r["seed"], r["fold"]) for r in mine}
    counts["missing"] = len(runs - {(r["seed"], r["fold"]) for r in mine})
    ran = counts["ok"] + sum(counts[s] for s in BAD)
    return {"status": status_text(counts["ok"], len(runs), counts), "n_planned": len(runs),
            "n_ok": counts["ok"], "n_failed": counts["failed"], "n_diverged": counts["diverged"],
            "n_missing": counts["missing"],
            "fail_rate": sum(counts[s] for s in BAD) / ran if ran else np.nan}


def _skeleton(records: list[dict], frame: pd.DataFrame, baseline, variant_list, plan) -> list[dict]:
    """The rows without accuracy, comparison or cost: who they are and their accounting."""
    families = dict(plan.families) if plan else {}
    rows = []
    for v in variant_list:
        runs = frame[frame["variant"] == v]
        account = _accounting(records, v, plan.runs_of(v) if plan else None)
        first = runs.iloc[0] if len(runs) else pd.Series({"factor": None, "arch": None})
        for form in sorted(runs["form"].unique(), key=form_key) if len(runs) else ["mean"]:
            is_base = v == baseline and form == "mean"
            family = family_of(v, form, first["factor"], families)
            reference = None if is_base else (f"{v} (mean)" if form != "mean" else baseline)
            rows.append({"variant": v, "form": form, "factor": first["factor"], "family": family,
                         "reference": reference, "is_baseline": is_base, "arch": first["arch"],
                         **account})
    return rows


def fail0(records: list[dict], variant: str, headline: dict, higher_is_better: bool) -> tuple[float, float]:
    """Mean and std over seeds of the headline (``headline``: seed -> per-image scores),
    every seed with a failed or diverged run (k-fold: any fold) scoring 0, so that no
    variant wins by failing; NaN for a lower-is-better headline (0 would be the best). A
    run the machine failed (``cause`` environment: a full disk, out of memory) is not the
    variant's outcome: its seed is left out, as a missing run is, until it is run again."""
    if not higher_is_better:
        return float("nan"), float("nan")
    mine = [r for r in records if r["variant"] == variant]
    machine = {r["seed"] for r in mine if r["status"] == "failed" and r.get("cause") == "environment"}
    failed = {r["seed"] for r in mine if r["status"] in BAD and r.get("cause") != "environment"}
    headline = {seed: s for seed, s in headline.items() if seed not in machine}
    values = [0.0] * len(failed) + [s.mean() for seed, s in headline.items() if seed not in failed and len(s)]
    return _mean_std(values)


def _accuracy(row: dict, seed_summary: dict, shown: dict) -> None:
    """A row's accuracy columns: mean and std over seeds of Dice, IoU, global Dice and each
    shown metric (``shown``: metric -> per-seed scores), the false-positive rate on empty
    references, and the images counted."""
    per_seed = pd.DataFrame(seed_summary.values(),
                            columns=["dice", "iou", "dice_global", "fpr_empty", "n_empty", "n_images"])
    for m in ("dice", "iou", "dice_global"):
        row[f"{m}_mean"], row[f"{m}_std"] = _mean_std(per_seed[m])
    for m, by_seed in shown.items():
        row[f"{m}_mean"], row[f"{m}_std"] = _mean_std([s.mean() for s in by_seed.values() if len(s)])
    has_empty = per_seed[per_seed["n_empty"] > 0]
    row["fpr_empty_mean"] = _mean_std(has_empty["fpr_empty"])[0]
    row["n_empty"], row["n_images"] = _median(per_seed["n_empty"]), _median(per_seed["n_images"])


def _mark(out: pd.DataFrame, families) -> None:
    """Holm within each family (an untested row counts as not rejected), the mark, and the
    rows whose interval and test disagree."""
    out["p_holm"] = np.nan
    for family in families:
        members = out.index[(out["family"] == family) & out["reference"].notna()]
        p = out.loc[members, "p"].to_numpy(float)
        adjusted = holm(np.where(np.isfinite(p), p, 1.0))
        out.loc[members, "p_holm"] = np.where(np.isfinite(p), adjusted, np.nan)
    out["significant"] = out["p_holm"].lt(ALPHA)
    excludes_zero = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    # the interval excludes 0 => p < alpha/m => Holm rejects; Holm steps down, so it may also
    # reject a row whose interval holds 0: such a row is inconclusive, and flagged
    out["disagree"] = out["p_holm"].notna() & (excludes_zero != out["significant"])
    out["verdict"] = [verdict(r) for _, r in out.iterrows()]


def verdict(row) -> str:
    """From the family's interval: "different" (it excludes 0 and is not within ±margin;
    the test then rejects too), "equivalent" (it lies within ±margin: two one-sided tests,
    each at half the interval's error rate), "equivalent (negligible)" (within the margin
    but excluding 0), "inconclusive" (neither), or "" where no test was made."""
    if not np.isfinite(row["p_holm"]) or not np.isfinite(row["ci_low"]):
        return ""
    excludes_zero = row["ci_low"] > 0 or row["ci_high"] < 0
    if -row["margin"] <= row["ci_low"] and row["ci_high"] <= row["margin"]:
        return "equivalent (negligible)" if excludes_zero else "equivalent"
    return "different" if excludes_zero else "inconclusive"


def fold_of(records: list[dict]) -> dict | None:
    """Test image id -> its k-fold test fold (None for a holdout split), so that the test
    takes (seed, fold) as its unit."""
    folds = {i: r["fold"] for r in records if r["fold"] is not None and r["status"] == "ok"
             for f in r["forms"][:1] for i in image_ids(f)}
    return folds or None


def summary_table(records: list[dict], baseline: str | None = None, order=None, plan=None,
                  metric: str = "dice", settings: ReportSettings | None = None) -> pd.DataFrame:
    """One row per (variant, form): accounting, accuracy, Δ of ``metric`` (the headline) to
    its reference, cost, and verdicts at ``settings.margin_for(metric)`` (default settings:
    the metric's own margin).

    Rows follow ``variant_order``; within a variant "mean" comes first, then L1..L4. A
    planned variant without a record, or whose every run failed, still has its "mean" row.
    Mean and std over seeds of the headline and of ``shown_metrics`` are ``<metric>_mean``
    and ``<metric>_std``; per-seed Δ columns ``delta_seed_<k>`` follow the named columns.
    Δ is in the metric's units, variant minus reference, whichever way is better
    (``higher_is_better``)."""
    info = metric_info(metric)
    check_metric(records, metric)
    margin = (settings or ReportSettings()).margin_for(metric)
    folds = fold_of(records)
    shown = [m for m in shown_metrics(records, metric) if m not in ("dice", "iou", "dice_global")]
    frame = runs_frame(records)
    frame["variant"] = frame["variant"].astype(str)
    rows = _skeleton(records, frame, baseline, variant_order(records, baseline, order), plan)
    size = Counter(r["family"] for r in rows if not r["is_baseline"])
    seeds = sorted({*(plan.seeds if plan else ()), *(r["seed"] for r in records)}, key=natural_key)
    cache: dict = {}

    def scores(variant, form, m=metric):
        if (variant, form, m) not in cache:
            cache[variant, form, m] = seed_scores(records, variant, form, m)
        return cache[variant, form, m]

    for row in rows:
        v, form = row["variant"], row["form"]
        runs = frame[(frame["variant"] == v) & (frame["form"] == form)]
        ok = runs[runs["status"] == "ok"]
        _accuracy(row, seed_summaries(records, v, form), {m: scores(v, form, m) for m in shown})
        row["fail0_mean"], row["fail0_std"] = fail0(records, v, scores(v, form), info.higher_is_better)
        row["family_size"] = size[row["family"]] if row["reference"] else 0
        level = 1 - ALPHA / max(row["family_size"], 1)
        if row["reference"] is None:  # the baseline, or no baseline to compare with
            comparison = {**COMPARISON, "per_seed": {}, "n_seeds": len(scores(v, form))}
        elif form == "mean":
            comparison = compare(scores(v, form), scores(baseline, "mean"), baseline, level, folds, margin)
        else:
            comparison = compare(scores(v, form), scores(v, "mean"), f"{v} (mean)", level, folds, margin)
        per_seed = comparison.pop("per_seed")
        row.update(comparison)
        row.update({f"delta_seed_{s}": per_seed.get(s, np.nan) for s in seeds})
        row.update(_cost(ok, records, v, form))

    out = pd.DataFrame(rows)
    out["metric"], out["higher_is_better"], out["margin"] = metric, info.higher_is_better, margin
    _mark(out, size)
    extra = [f"{m}_{x}" for m in shown for x in ("mean", "std")]
    extra += [c for c in out.columns if c.startswith("delta_seed_")]
    return out[SUMMARY_COLUMNS + extra].reset_index(drop=True)


def margin_of(summary: pd.DataFrame) -> float:
    """The equivalence margin a summary table's verdicts were judged at (NaN: no rows)."""
    return float(summary["margin"].iloc[0]) if len(summary) else float("nan")
