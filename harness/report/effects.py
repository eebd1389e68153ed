"""Factorial effects: main effects and interactions of a two-level design (``harness.spec.design``),
from the per-image, per-seed scores, with the report's hierarchical inference.

The estimate of a term is its contrast over the design points (``Design.contrast``): a
main effect is the mean at the axis's second level minus the mean at its first, over all
points; an interaction AB half of (A's effect at B's second level - at its first). Applied
to each seed's per-image scores it gives a seeds x images matrix of contrast values, the
paired differences of the rest of the report, so the same model (``stats.seed_model``:
seeds x images two-way ANOVA; k-fold: (seed, fold) units) gives the interval, the test and
the minimum detectable effect. The family is every estimated term: t intervals at its
Bonferroni level, Holm within it, the verdicts and margin of every other table. A full
design estimates every order; a fraction main effects and two-factor interactions, each
named with its aliases.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..fileio import write_text_atomic
from ..metrics import metric as metric_info
from ..spec.design import Design
from ..spec.settings import ReportSettings
from .stats import ALPHA, holm, seed_model
from .style import FigureResult
from .summary import MIN_SEEDS, fold_of, seed_scores, verdict
from .tables import format_p, latex_table, markdown_table

EFFECT_COLUMNS = ["term", "order", "estimate", "ci_low", "ci_high", "ci_level", "se", "df", "mde", "p", "p_holm",
                  "margin", "verdict", "aliases", "metric", "n_seeds", "n_images"]


def design_of(d: dict) -> tuple[Design, list[str]]:
    """The ``Design`` and point labels of sweep.json's ``design``."""
    points = tuple(tuple(p["coded"]) for p in d["points"])
    return (Design(tuple(d["axes"]), tuple(tuple(v) for v in d["levels"]), points,
                   tuple(tuple(g) for g in d["generators"])), [p["label"] for p in d["points"]])


def point_scores(records: list[dict], labels: list[str], metric: str) -> tuple[np.ndarray, list, list] | str:
    """(points x seeds x images scores, seeds, images) on the seeds every point ran ok and
    the images all of them scored; a one-line reason where no test is possible."""
    scores = {label: seed_scores(records, label, "mean", metric) for label in dict.fromkeys(labels)}
    seeds = sorted(set.intersection(*(set(s) for s in scores.values())))
    if len(seeds) < MIN_SEEDS:
        lacking = [label for label, s in scores.items() if len(s) < MIN_SEEDS]
        return (f"fewer than {MIN_SEEDS} seeds ran ok at every design point"
                + (f" ({', '.join(lacking)} ha{'s' if len(lacking) == 1 else 've'} fewer)" if lacking else ""))
    images = sorted(set.intersection(*(set(scores[label][s].index) for label in scores for s in seeds)))
    if not images:
        return "no test image was scored at every design point"
    y = np.stack([np.stack([scores[label][s][images].to_numpy(float) for s in seeds]) for label in labels])
    return y, seeds, images


def estimate_effects(plan: Design, y: np.ndarray, groups, metric: str, margin: float) -> pd.DataFrame:
    """The effects of ``plan`` from ``y`` (points x seeds x images, seed k of every point in
    row k; ``groups``: each image's k-fold test fold, or None)."""
    _, n_seeds, n_images = y.shape
    terms = plan.terms()
    level = 1 - ALPHA / len(terms)
    rows = []
    for term in terms:
        model = seed_model(np.tensordot(plan.contrast(term), y, axes=1), groups)
        low, high = model.interval(level)
        others = [plan.name(a) for a in plan.aliases(term) if a != term] if plan.generators else []
        rows.append({"term": plan.name(term), "order": len(term), "estimate": model.mean, "ci_low": low,
                     "ci_high": high, "ci_level": level, "se": model.se, "df": model.df, "mde": model.mde(level),
                     "p": model.p, "margin": margin, "aliases": " = ".join(others), "metric": metric,
                     "n_seeds": n_seeds, "n_images": n_images})
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out["p"].to_numpy(float))
    out["verdict"] = [verdict(r) for _, r in out.iterrows()]
    return out[EFFECT_COLUMNS]


def _display(effects: pd.DataFrame) -> tuple[list[str], list[str], list[list[str]]]:
    headers = ["Term", "Effect [adj. CI]", "Verdict", "MDE", "p (Holm)", "Aliases"]
    rows = []
    for _, r in effects.iterrows():
        mark = "†" if r["verdict"] == "different" else ""
        rows.append([f"{r['term']}{mark}", f"{r['estimate']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]",
                     r["verdict"], f"{r['mde']:.4f}", format_p(r["p_holm"]), r["aliases"] or "—"])
    return headers, ["l", "r", "l", "r", "r", "l"], rows


def caption(effects: pd.DataFrame, design_d: dict, name: str) -> str:
    info = metric_info(effects["metric"].iloc[0])
    plan, _ = design_of(design_d)
    kind = (f"full 2^{plan.k} design" if not plan.generators
            else f"2^({plan.k}-{plan.p}) fraction of resolution {plan.resolution}")
    r = effects.iloc[0]
    return (f"{name}: factorial effects on {info.label} ({'higher' if info.higher_is_better else 'lower'} is "
            f"better), a {kind} over {', '.join(plan.axes)} ({len(plan.points)} design points, "
            f"{int(r['n_seeds'])} seeds x {int(r['n_images'])} test images each). A main effect is the mean at "
            f"the axis's second level minus the mean at its first; an interaction A:B half of (A's effect at B's "
            f"second level minus at its first). Intervals: t intervals of the seeds x images model at the family's "
            f"Bonferroni level ({100 * r['ci_level']:.4g}%, {len(effects)} terms); † different (Holm p < {ALPHA:g}, "
            f"interval not within ±{r['margin']:g}); equivalent: the interval within ±{r['margin']:g}. "
            f"Alias structure: {design_d['aliases']}.")


def write_effects(effects: pd.DataFrame, design_d: dict, name: str, out) -> str:
    """effects.csv, effects.md and effects.tex; returns the Markdown table."""
    cap = caption(effects, design_d, name)
    headers, aligns, rows = _display(effects)
    md = markdown_table(headers, aligns, rows, cap, "")
    write_text_atomic(out / "effects.csv", effects.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    write_text_atomic(out / "effects.md", md)
    write_text_atomic(out / "effects.tex", latex_table(headers, aligns, rows, cap, f"{name}-effects", ""))
    return md


def one_factor_text(effects: pd.DataFrame, plan: Design, summary: pd.DataFrame) -> list[str]:
    """Where an axis's one-factor Δ (the summary's, measured with every other axis at its
    first level) lies outside the factorial main effect's interval, and the two-factor
    interaction of that axis that explains it (the largest found)."""
    lines = []
    by_term = effects.set_index("term")
    for axis, levels in zip(plan.axes, plan.levels):
        row = summary[(summary["variant"] == f"{axis}={levels[1]}") & (summary["form"] == "mean")]
        if row.empty or axis not in by_term.index or not np.isfinite(row["delta"].iloc[0]):
            continue
        delta, main = float(row["delta"].iloc[0]), by_term.loc[axis]
        if main["ci_low"] <= delta <= main["ci_high"]:
            continue
        pairs = by_term[(by_term["order"] == 2) & by_term.index.str.split(":").map(lambda t, a=axis: a in t)]
        why = ""
        if not pairs.empty:
            term = pairs["estimate"].abs().idxmax()
            other = next(a for a in term.split(":") if a != axis)
            why = (f"; {term} ({pairs.loc[term, 'estimate']:+.4f}, {pairs.loc[term, 'verdict'] or 'untested'}) "
                   f"explains it: the one-factor Δ is measured at {other}={plan.levels[plan.axes.index(other)][0]} "
                   f"only")
        lines.append(f"- **{axis}**: the one-factor Δ {delta:+.4f} ({row['variant'].iloc[0]}) lies outside the "
                     f"factorial main effect {main['estimate']:+.4f} [{main['ci_low']:+.4f}, "
                     f"{main['ci_high']:+.4f}]{why}.")
    return lines


def write_factorial(records: list[dict], plan, summary: pd.DataFrame, out: Path, name: str,
                    settings: ReportSettings, figures: list, draw: bool = True) -> str:
    """The factorial part of a report (``plan.design``): effects.csv/md/tex, the main-effects,
    interaction and half-normal figures (appended to ``figures``), and the Markdown of its
    section; "" without a design (stale files of an earlier build removed)."""
    names = ("effects.csv", "effects.md", "effects.tex",
             *(f"{f}.{s}" for f in ("main_effects", "interactions", "half_normal") for s in ("pdf", "png")))
    for stale in names:
        (out / stale).unlink(missing_ok=True)
    if getattr(plan, "design", None) is None:
        return ""
    metric = settings.metric
    design, labels = design_of(plan.design)
    got = point_scores(records, labels, metric)
    if isinstance(got, str):
        return f"No factorial effects: {got}.\n"
    y, _, images = got
    folds = fold_of(records)
    margin = settings.margin_for(metric)
    effects = estimate_effects(design, y, [folds[i] for i in images] if folds else None, metric, margin)
    means = y.mean(axis=(1, 2))
    label = metric_info(metric).label
    from .effects_figures import half_normal, interactions, main_effects

    figures += ([main_effects(design, means, label, out), interactions(design, means, effects, label, out),
                 half_normal(effects, margin, out)] if draw
                else FigureResult.skipped("main_effects", "interactions", "half_normal"))
    md = write_effects(effects, plan.design, name, out)
    compared = one_factor_text(effects, design, summary)
    return md + ("\n**One factor at a time vs the factorial design.**\n\n" + "\n".join(compared) + "\n"
                 if compared else "")
