"""The figures of a suite (every variant on several data sets), in the style of ``figures``.

1. ``cd_diagram``    Demšar's critical-difference diagram: the mean rank of each variant
                      over the data sets (best on the left), bars joining the variants that
                      the Nemenyi test does not tell apart, and the CD itself.
2. ``suite_heatmap`` Δ to the baseline, variants x data sets, a diverging colormap centred
                      at 0 whose "better" colour is the same whichever way the metric points.

Call them inside ``matplotlib.rc_context(style.STYLE)``, as ``figures.draw_figures`` does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from .ranks import FriedmanResult
from .style import LABEL_PT, ONE_COL, TWO_COL, FigureResult, new_figure, save_figure
from .tables import p_text

ROW = 0.16      # vertical step between the label lines of the CD diagram (axes units)
BAR = 0.07      # vertical step between its group bars
MARGIN = 0.08   # the label lines reach this share of the rank axis beyond each end
CHAR_IN = 0.055  # rough width of a 7-pt character in inches, to choose the figure width


def _fmt(x: float) -> str:
    return "∞" if x == np.inf else (f"{x:.2f}" if np.isfinite(x) else "—")


def cd_diagram(result: FriedmanResult, colors: dict, out_dir: Path) -> FigureResult:
    res = FigureResult("cd_diagram")
    ranks = result.mean_ranks
    k, n = result.n_variants, result.n_datasets
    if ranks.empty or n == 0:
        res.note = "skipped: no variant has a score on every data set"
        return res
    if not (result.p < result.alpha and result.cd < k - 1):
        res.note = "not drawn: " + (result.note or ("no pair can be told apart (CD ≥ the largest rank gap)"
                                                    if result.cd >= k - 1 else "Friedman does not reject, "
                                                    "so there is no post-hoc comparison"))
        return res
    names = list(ranks.index)
    labels = [f"{v} ({r:.2f})" for v, r in ranks.items()]
    left = (k + 1) // 2                     # the better half is labelled on the left
    hi = max(k, 2)                          # the axis runs 1..k (1..2 for a single variant)
    width = ONE_COL if 2 * CHAR_IN * max(map(len, labels)) + 0.35 * (hi - 1) <= ONE_COL else TWO_COL
    depth = max(left, k - left)
    fig = new_figure(width, 0.75 + 0.2 * depth + 0.08 * len(result.groups))
    ax = fig.subplots()
    ax.set_axis_off()

    _rank_axis(ax, hi, result.cd)

    # group bars just below the axis
    bars_end = -0.06 - BAR * len(result.groups)
    for g, group in enumerate(result.groups):
        y = -0.08 - BAR * g
        ax.plot([ranks[group[0]] - 0.05, ranks[group[-1]] + 0.05], [y, y], color="0.1", lw=2.5,
                solid_capstyle="round", zorder=3)

    # one elbow line per variant: down from its rank, out to its label
    x_left, x_right = 1 - MARGIN * (hi - 1), hi + MARGIN * (hi - 1)
    for i, (v, label) in enumerate(zip(names, labels)):
        on_left = i < left
        step = i if on_left else k - 1 - i   # the variants nearest an end get the shortest lines
        y = bars_end - 0.1 - ROW * step
        x_end = x_left if on_left else x_right
        c = colors.get(v, "0.2")
        ax.plot([ranks[v], ranks[v], x_end], [0, y, y], color=c, lw=1.0, zorder=2)
        ax.text(x_end + (-0.05 if on_left else 0.05), y, label, ha="right" if on_left else "left",
                va="center", fontsize=LABEL_PT, color="0.1")
    ax.set_xlim(x_left, x_right)
    ax.set_ylim(bars_end - 0.15 - ROW * (depth - 1), 0.55)
    res.files = save_figure(fig, out_dir, res.name)

    res.caption = _cd_caption(result)
    if result.note:
        res.note = f"ranks only, {result.note}"
    return res


def _rank_axis(ax, hi: int, cd: float) -> None:
    """The rank axis (y = 0) with its ticks and numbers, and the CD bar above it from rank 1."""
    ax.plot([1, hi], [0, 0], color="0.2", lw=0.8)
    for t in np.arange(1, hi + 0.01, 0.5):
        major = float(t).is_integer()
        ax.plot([t, t], [0, 0.06 if major else 0.03], color="0.2", lw=0.6)
        if major:
            ax.text(t, 0.09, f"{t:g}", ha="center", va="bottom", fontsize=LABEL_PT)
    if np.isfinite(cd):
        y = 0.42
        ax.plot([1, 1 + cd], [y, y], color="0.2", lw=0.8, clip_on=False)
        for x in (1, 1 + cd):   # the CD may be longer than the rank axis
            ax.plot([x, x], [y - 0.03, y + 0.03], color="0.2", lw=0.8, clip_on=False)
        ax.text(1 + cd / 2, y + 0.05, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=LABEL_PT)


def _cd_caption(result: FriedmanResult) -> str:
    k, n = result.n_variants, result.n_datasets
    caption = (f"Mean rank of each of {k} variants over {n} data sets (rank 1 = best on a "
               f"data set, ties averaged; best on the left; mean rank in brackets).")
    if result.note:
        caption += f" No test: {result.note.removeprefix('no Friedman test: ')}."
    else:
        df2 = (k - 1) * (n - 1)
        caption += (f" Friedman χ²({k - 1}) = {_fmt(result.statistic)}, {p_text(result.p)}; "
                    f"Iman–Davenport F({k - 1}, {df2}) = {_fmt(result.iman_davenport_f)}, "
                    f"{p_text(result.iman_davenport_p)}.")
    if np.isfinite(result.cd):
        caption += (f" Variants joined by a bar are not significantly different by the "
                    f"Nemenyi test at α = {result.alpha:g} (CD = {result.cd:.2f}).")
    if result.left_out:
        caption += f" Left out (no score on some data set): {', '.join(map(str, result.left_out))}."
    return caption


def delta_heatmap(delta: pd.DataFrame, significant: pd.DataFrame, metric_label: str,
                  higher_is_better: bool, out_dir: Path) -> FigureResult:
    """``delta``: variants (not the baseline) x data sets, Δ to the baseline in the metric's
    units; ``significant``: the same shape, True where the difference is marked †."""
    res = FigureResult("suite_heatmap")
    values = delta.astype(float)
    if values.empty or values.isna().all().all():
        res.note = "skipped: no difference to a baseline could be computed on any data set"
        return res
    sig = significant.reindex_like(values).fillna(False).astype(bool)
    annot = (values.map(lambda x: "" if np.isnan(x) else f"{x:+.3f}".replace("-", "−"))
             + sig.map(lambda s: "†" if s else ""))   # a true minus sign, as the tables
    rows, cols = values.shape
    need = 1.0 + CHAR_IN * max(len(str(v)) for v in values.index) + 0.5 * cols
    fig = new_figure(ONE_COL if need <= ONE_COL else TWO_COL, 0.9 + 0.22 * rows)
    ax = fig.subplots()
    ax.set_facecolor("0.88")                           # NaN cells: grey, with a dash
    vmax = float(np.nanmax(np.abs(values.to_numpy()))) or 1.0
    better = "higher" if higher_is_better else "lower"
    sns.heatmap(values, ax=ax, cmap="RdBu" if higher_is_better else "RdBu_r", center=0,
                vmin=-vmax, vmax=vmax, annot=annot.to_numpy(), fmt="",
                annot_kws={"fontsize": LABEL_PT},
                linewidths=0.5, linecolor="white",
                cbar_kws={"label": f"Δ {metric_label} ({better} is better)"})
    for i, j in zip(*np.nonzero(values.isna().to_numpy())):
        ax.text(j + 0.5, i + 0.5, "—", ha="center", va="center", fontsize=LABEL_PT, color="0.35")
    ax.set_xlabel("Data set")
    ax.set_ylabel("")
    ax.tick_params(length=0)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=30 if cols > 3 else 0,
                       ha="right" if cols > 3 else "center")
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    res.files = save_figure(fig, out_dir, res.name)
    res.caption = (f"Δ {metric_label} of each variant to the baseline on each data set, in the "
                   f"metric's units ({better} is better; blue = better than the baseline, red = "
                   f"worse); † = significant on that data set; — = no Δ (no ok run).")
    return res
