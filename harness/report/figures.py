"""The figures, each saved as a vector PDF (TrueType fonts embedded) and a 300-dpi PNG.

1. ``accuracy_cost``    headline metric vs GMACs (log x) and vs inference images/s, Pareto fronts.
2. ``ablation``         Δ vs the reference with its family-adjusted interval, one panel per
                         shown metric (headline, thin-structure Dice, Rand F); filled = †.
3. ``curves``           validation Dice vs training step, mean over seeds, min-max band.
4. ``qualitative``      up to 3 test images: input, ground truth, each variant's prediction.
5. ``deep_supervision`` Dice and GMACs of the pruned forms L1..L4 and the mean of heads.

Paper conventions: widths 3.3 in (one column) or 7 in (two columns), 7-8 pt text,
seaborn's colour-blind palette with ONE colour per variant in every figure (built once
from the sorted variant names), ``bbox_inches="tight"``. Matplotlib's object API is used
(no pyplot state); the style is applied with ``rc_context`` so nothing global changes.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.transforms import Bbox

from ..metrics import metric as metric_info
from ..store.records import history
from .describe import macs_size_text
from .qualitative import qualitative
from .stats import ALPHA, pareto_front
from .style import LABEL_PT, ONE_COL, STYLE, TWO_COL, FigureResult, new_figure, palette, save_figure
from .summary import margin_of
from .tables import format_p


def _finite(x) -> bool:
    return x is not None and bool(np.isfinite(x))


def _row_label(r) -> str:
    return r["variant"] + ("" if r["form"] == "mean" else f" [{r['form']}]")


def _factor_suffix(r) -> str:
    """" (factor)" when the row names the factor it changes and the label does not say it."""
    f = r["factor"]
    if not isinstance(f, str) or f in ("", "baseline") or f in r["variant"]:
        return ""
    return f" ({f})"


def _cost_axis(ax, values, label: str) -> None:
    """Log x axis (ticks 1-2-5, plain numbers) when the values span 3x or more, else linear."""
    v = np.asarray(values, dtype=float)
    if v.max() / v.min() >= 3:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        label += " (log scale)"
    else:
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    ax.set_xlabel(label)


# --------------------------------------------------------------------------- labels

_OFFSETS = [(4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
            (-4, -3, "right", "top"), (0, 6, "center", "bottom"), (0, -6, "center", "top")]


def _overlap(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _label_points(ax, xs, ys, labels) -> bool:
    """Label points without overlaps: each label takes the first of a few positions
    around its point (then farther out, with a leader line) that overlaps no marker,
    no earlier label and does not leave the axes; else the least-overlapping one. True
    when every label found a place free of overlaps."""
    fig = ax.figure
    fig.draw_without_rendering()  # final layout and limits, so display coordinates hold
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    r = 3.5 * fig.dpi / 72
    taken = [Bbox.from_extents(x - r, y - r, x + r, y + r) for x, y in pts]
    clean = True
    for i in np.argsort(-pts[:, 1], kind="stable"):
        best = None
        for scale in (1.0, 3.0):
            for dx, dy, ha, va in _OFFSETS:
                t = ax.annotate(labels[i], (xs[i], ys[i]), xytext=(dx * scale, dy * scale),
                                textcoords="offset points", ha=ha, va=va, fontsize=LABEL_PT,
                                arrowprops=dict(arrowstyle="-", lw=0.4, color="0.5",
                                                shrinkA=0, shrinkB=3) if scale > 1 else None)
                t.set_in_layout(False)
                bb = t.get_window_extent(renderer)
                cost = (sum(_overlap(bb, o) for o in taken)
                        + bb.width * bb.height - _overlap(bb, box))
                if best is None or cost < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (cost, t, bb)
                else:
                    t.remove()
                if cost == 0:
                    break
            if best[0] == 0:
                break
        taken.append(best[2])
        clean = clean and best[0] == 0
    return clean


def _key_points(fig, rows: pd.DataFrame, colors: dict) -> None:
    """Replace the names beside the points of every panel by numbers, keyed in a legend
    below the panels (the names of crowded points overlap wherever they go)."""
    number = {v: k + 1 for k, v in enumerate(dict.fromkeys(rows["variant"]))}
    for ax in fig.axes:
        for text in list(ax.texts):
            if text.get_text() in number:
                text.set_text(str(number[text.get_text()]))
    handles = [Line2D([], [], ls="none", marker="s" if base else "o", color=colors[v], ms=4)
               for v, base in zip(number, rows.drop_duplicates("variant")["is_baseline"])]
    fig.legend(handles, [f"{n} {v}" for v, n in number.items()], loc="outside lower center",
               ncol=min(5, len(number)), frameon=False, fontsize=LABEL_PT, handletextpad=0.2, columnspacing=1.0)


# --------------------------------------------------------------------------- figures

def accuracy_cost(summary: pd.DataFrame, colors: dict, out_dir: Path) -> FigureResult:
    res = FigureResult("accuracy_cost")
    info = metric_info(summary["metric"].iloc[0])
    y, y_std = f"{info.name}_mean", f"{info.name}_std"
    rows = summary[(summary["form"] == "mean") & summary[y].notna()]
    if rows.empty:
        res.note = "skipped: no variant has an ok run"
        return res
    size = macs_size_text(summary)
    batches = sorted({f"{b:g}" for b in rows["infer_batch"].dropna()})
    batch = f", batch {'/'.join(batches)}" if batches else ""
    fig = new_figure(TWO_COL, 2.8)
    clean = True
    panels = [("gmacs", f"GMACs per {size} image", True),
              ("infer_img_s", f"Inference throughput (images/s{batch})", False)]
    for ax, (col, xlabel, minimize) in zip(fig.subplots(1, 2), panels):
        d = rows[pd.to_numeric(rows[col], errors="coerce") > 0]
        ax.set_ylabel(f"{info.label} (mean ± std over seeds)" + ("" if info.higher_is_better else ", lower is better"))
        if d.empty:
            ax.set_xlabel(xlabel)
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center")
            continue
        for _, r in d.iterrows():
            ax.errorbar(r[col], r[y], yerr=r[y_std] if _finite(r[y_std]) else None,
                        fmt="s" if r["is_baseline"] else "o", ms=4, color=colors[r["variant"]],
                        capsize=2, elinewidth=0.8, zorder=3)
        sign = 1 if info.higher_is_better else -1  # the front keeps the best value for the cost
        front = d[pareto_front(d[col], sign * d[y], minimize_cost=minimize)].sort_values(col)
        ax.plot(front[col], front[y], ls="--", color="0.45", lw=0.8, zorder=2)
        ax.plot(front[col], front[y], ls="none", marker="o", ms=8, mfc="none",
                mec="0.3", mew=0.7, zorder=4)
        _cost_axis(ax, d[col], xlabel)
        ax.margins(x=0.2, y=0.15)
        ax.legend([Line2D([], [], ls="--", marker="o", mfc="none", color="0.3", ms=6, lw=0.8)],
                  ["Pareto front"], loc="lower right", frameon=False)
        clean = _label_points(ax, d[col].to_numpy(float), d[y].to_numpy(float), d["variant"].tolist()) and clean
    if not clean:  # too many points too close for names: numbers, keyed below the panels
        _key_points(fig, rows, colors)
    res.files = save_figure(fig, out_dir, res.name)
    best = "highest" if info.higher_is_better else "lowest"
    res.caption = (f"Test {info.label} (mean ± std over ok seeds) against MACs per {size} image and "
                   f"against inference throughput (median over seeds); the baseline is a square. "
                   f"The dashed line joins the Pareto-optimal variants ({best} {info.label} for the "
                   f"cost). Pruned deep-supervision forms are in the deep-supervision figure.")
    return res


VERDICT_MARKERS = {"different": ("o", True), "equivalent": ("s", False), "inconclusive": ("o", False)}
VERDICT_MARKERS_ALL = {**VERDICT_MARKERS, "equivalent (negligible)": ("s", False)}


def ablation(panels: dict, colors: dict, out_dir: Path) -> FigureResult:
    """Small multiples: one panel of Δ vs the reference per metric of ``panels`` (metric ->
    summary), the headline first, rows in the same order, so that a reader sees at once
    where Dice and topology disagree."""
    res = FigureResult("ablation")
    first = next(iter(panels.values()))
    keep = ~first["is_baseline"].astype(bool) & pd.concat(
        [t["delta"].notna() for t in panels.values()], axis=1).any(axis=1)
    if not keep.any():
        res.note = "skipped: no difference to a baseline could be computed"
        return res
    n = len(panels)
    fig = new_figure(ONE_COL if n == 1 else TWO_COL, 0.9 + 0.22 * int(keep.sum()))
    axes = np.atleast_1d(fig.subplots(1, n, sharey=True))
    y = np.arange(int(keep.sum()))[::-1]
    for ax, (name, summary) in zip(axes, panels.items()):
        info = metric_info(name)
        rows = summary[keep]
        ptext = ax.get_yaxis_transform()
        for yi, (_, r) in zip(y, rows.iterrows()):
            if not _finite(r["delta"]):
                continue
            c = colors[r["variant"]]
            err = ([[r["delta"] - r["ci_low"]], [r["ci_high"] - r["delta"]]]
                   if _finite(r["ci_low"]) and _finite(r["ci_high"]) else None)
            marker, filled = VERDICT_MARKERS_ALL.get(r["verdict"], ("o", False))
            ax.errorbar(r["delta"], yi, xerr=err, fmt=marker, ms=4, color=c,
                        mfc=c if filled else "white", capsize=2, elinewidth=0.8, zorder=3)
            if n == 1:
                ax.text(1.03, yi, format_p(r["p_holm"]), transform=ptext, va="center", ha="left",
                        fontsize=LABEL_PT)
        if _finite(margin := margin_of(summary)):
            ax.axvspan(-margin, margin, color="0.92", lw=0, zorder=0)
        if n == 1:
            ax.text(1.03, 1.0, "p (Holm)", transform=ax.transAxes, va="bottom", ha="left",
                    fontsize=LABEL_PT)
        ax.axvline(0, color="0.3", lw=0.7, ls=":", zorder=1)
        ax.set_xlabel(f"Δ{info.label}\n({'better →' if info.higher_is_better else '← better'})")
    axes[0].set_yticks(y, [_row_label(r) + _factor_suffix(r) for _, r in first[keep].iterrows()])
    axes[0].set_ylim(-0.7, len(y) - 0.3)
    fig.legend([Line2D([], [], ls="none", marker=m, color="0.3", mfc="0.3" if f else "white", ms=4)
                for m, f in VERDICT_MARKERS.values()] + [Patch(color="0.92")],
               [*VERDICT_MARKERS, "±margin"], loc="outside lower center", ncols=4, frameon=False)
    res.files = save_figure(fig, out_dir, res.name)
    names = ", ".join(metric_info(m).label for m in panels)
    res.caption = (f"Δ vs the reference (the baseline; a pruned form: its own network's "
                   f"accurate form) of {names}, one panel each (headline first; the arrow "
                   "says which way is better), with the seed-level test's interval (seeds x "
                   "images) at the Bonferroni level of the row's family, and the verdict at the "
                   "margin (grey band): filled circle different (Holm p < "
                   f"{ALPHA:g} and outside the margin), square equivalent (the interval within it), "
                   "hollow circle inconclusive"
                   + ("; p on the right, — where no test was possible." if n == 1 else
                      "; the p-values are in table.csv of each `--metric` report. Panels beyond "
                      "the headline are exploratory: each is corrected within its own family "
                      "only, not across metrics."))
    return res


def curves(records: list[dict], order: list[str], colors: dict, out_dir: Path) -> FigureResult:
    res = FigureResult("curves")
    hist = pd.DataFrame([
        {"variant": r["variant"], "seed": r["seed"], "step": h["step"], "val_dice": h["val_dice"]}
        for r in records if r["status"] == "ok" for h in history(r)])
    if hist.empty or hist["val_dice"].isna().all():
        res.note = "skipped: the records hold no validation history"
        return res
    hist = hist.dropna(subset=["step", "val_dice"])
    hue_order = [v for v in order if v in set(hist["variant"])]
    fig = new_figure(ONE_COL, 2.3 + 0.12 * ((len(hue_order) + 1) // 2))
    ax = fig.subplots()
    sns.lineplot(data=hist, x="step", y="val_dice", hue="variant", hue_order=hue_order,
                 palette=colors, estimator="mean", errorbar=lambda v: (v.min(), v.max()),
                 ax=ax, linewidth=1.0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Training step")
    ax.set_ylabel("Validation Dice")
    sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.22), ncols=2, frameon=False,
                    title=None)
    res.files = save_figure(fig, out_dir, res.name)
    res.caption = "Validation Dice during training: mean over ok seeds, band = min to max over seeds."
    return res


def deep_supervision(summary: pd.DataFrame, colors: dict, out_dir: Path) -> FigureResult:
    res = FigureResult("deep_supervision")
    ds_variants = [v for v in dict.fromkeys(summary["variant"])
                   if (summary.loc[summary["variant"] == v, "form"] != "mean").any()]
    if not ds_variants:
        res.note = "skipped: no variant has pruned forms (L1..L4)"
        return res
    rows = summary[summary["variant"].isin(ds_variants)]
    forms = sorted(set(rows["form"]), key=lambda f: (f == "mean", f))
    x_of = {f: i for i, f in enumerate(forms)}
    fig = new_figure(TWO_COL, 2.4)
    ax_dice, ax_cost = fig.subplots(1, 2)
    for j, v in enumerate(ds_variants):
        d = rows[rows["variant"] == v].sort_values("form", key=lambda s: s.map(x_of))
        x = d["form"].map(x_of).to_numpy(float) + (j - (len(ds_variants) - 1) / 2) * 0.08
        ax_dice.errorbar(x, d["dice_mean"], yerr=d["dice_std"].fillna(0), marker="o", ms=4,
                         color=colors[v], capsize=2, lw=1.0, elinewidth=0.8, label=v)
        ax_cost.plot(x, d["gmacs"], marker="o", ms=4, color=colors[v], lw=1.0, label=v)
    labels = ["mean of\nheads" if f == "mean" else f for f in forms]
    for ax in (ax_dice, ax_cost):
        ax.set_xticks(range(len(forms)), labels)
        ax.set_xlabel("Inference form (pruned to head k, or mean of all heads)")
    ax_dice.set_ylabel("Dice (mean ± std over seeds)")
    ax_cost.set_ylabel(f"GMACs per {macs_size_text(summary)} image")
    ax_cost.legend(frameon=False, loc="best")
    res.files = save_figure(fig, out_dir, res.name)
    res.caption = ("Deep-supervision UNet++: test Dice and MACs of the network pruned to one "
                   "head (L1..L4, 'fast' mode) and of the mean of all heads ('accurate' mode).")
    return res


REPORT_FIGURES = ("accuracy_cost", "ablation", "curves", "qualitative", "deep_supervision")


def draw_figures(records: list[dict], summary: pd.DataFrame, order: list[str],
                 baseline: str | None, samples: dict, out_dir: Path,
                 panels: dict | None = None) -> list[FigureResult]:
    """Draw every figure of ``REPORT_FIGURES`` into ``out_dir``; a figure that cannot be
    drawn is skipped with a note (in the front page) instead of stopping the report."""
    out_dir = Path(out_dir)
    colors = palette(r["variant"] for r in records)
    draw = {
        "accuracy_cost": lambda: accuracy_cost(summary, colors, out_dir),
        "ablation": lambda: ablation(panels or {summary["metric"].iloc[0]: summary}, colors, out_dir),
        "curves": lambda: curves(records, order, colors, out_dir),
        "qualitative": lambda: qualitative(records, order, baseline, samples, out_dir),
        "deep_supervision": lambda: deep_supervision(summary, colors, out_dir),
    }
    results = []
    with matplotlib.rc_context(STYLE):
        for name, make in draw.items():
            try:
                results.append(make())
            except Exception as e:  # noqa: BLE001 -- one broken figure must not stop the report
                results.append(FigureResult(name, note=f"not drawn: {e.__class__.__name__}: {e}"))
    return results
