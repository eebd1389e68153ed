"""The figures of a factorial design: the main effects, the interaction plot of every
two-factor interaction found different, and a half-normal plot of every effect with the
margin drawn (Daniel's plot: effects that are noise fall on a line through 0)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..spec.design import Design
from .figures import _label_points
from .style import LABEL_PT, ONE_COL, TWO_COL, FigureResult, new_figure, save_figure

NAMED = 3  # the half-normal plot names the largest effects (and every one found different)


def _level_means(plan: Design, means: np.ndarray, axis: int, given: tuple[int, int] | None = None) -> list[float]:
    """The mean over the points at each level of ``axis`` (of those where axis ``given[0]``
    is at coded level ``given[1]``)."""
    out = []
    for level in (-1, 1):
        keep = [m for pt, m in zip(plan.points, means)
                if pt[axis] == level and (given is None or pt[given[0]] == given[1])]
        out.append(float(np.mean(keep)))
    return out


def main_effects(plan: Design, means: np.ndarray, label: str, out_dir: Path) -> FigureResult:
    res = FigureResult("main_effects")
    fig = new_figure(min(TWO_COL, 1.5 + 1.4 * plan.k), 2.2)
    axes = fig.subplots(1, plan.k, sharey=True, squeeze=False)[0]
    for i, ax in enumerate(axes):
        ax.plot([0, 1], _level_means(plan, means, i), marker="o", color="0.2", lw=1)
        ax.axhline(float(np.mean(means)), color="0.6", lw=0.6, ls=":")
        ax.set_xticks([0, 1], [str(v) for v in plan.levels[i]], fontsize=LABEL_PT)
        ax.set_xlim(-0.3, 1.3)
        ax.set_title(plan.axes[i], fontsize=LABEL_PT + 1)
    axes[0].set_ylabel(f"mean {label}")
    res.files = save_figure(fig, out_dir, res.name)
    res.caption = (f"Main effects: the mean {label} over the design points at each level of each axis (the "
                   f"first level is the baseline's); the dotted line is the grand mean.")
    return res


def interactions(plan: Design, means: np.ndarray, effects: pd.DataFrame, label: str, out_dir: Path) -> FigureResult:
    res = FigureResult("interactions")
    marked = [t for t in effects.loc[(effects["order"] == 2) & (effects["verdict"] == "different"), "term"]]
    if not marked:
        res.note = "not drawn: no two-factor interaction is found different"
        return res
    fig = new_figure(min(TWO_COL, 0.6 + 2.0 * len(marked)), 2.3)
    for ax, term in zip(fig.subplots(1, len(marked), squeeze=False)[0], marked):
        a, b = (plan.axes.index(x) for x in term.split(":"))
        for level, style in ((-1, "-"), (1, "--")):
            ax.plot([0, 1], _level_means(plan, means, a, (b, level)), marker="o", ls=style, color="0.2", lw=1,
                    label=f"{plan.axes[b]} = {plan.levels[b][(level + 1) // 2]}")
        ax.set_xticks([0, 1], [str(v) for v in plan.levels[a]], fontsize=LABEL_PT)
        ax.set_xlim(-0.3, 1.3)
        ax.set_xlabel(plan.axes[a])
        ax.set_ylabel(f"mean {label}")
        ax.legend(frameon=False, fontsize=LABEL_PT)
    res.files = save_figure(fig, out_dir, res.name)
    res.caption = ("Interaction plots of the two-factor interactions found different: non-parallel lines are "
                   "the interaction (one axis's effect depends on the other's level).")
    return res


def half_normal(effects: pd.DataFrame, margin: float, out_dir: Path) -> FigureResult:
    res = FigureResult("half_normal")
    e = effects.assign(size=effects["estimate"].abs()).sort_values("size")
    m = len(e)
    q = stats.norm.ppf(0.5 + 0.5 * (np.arange(1, m + 1) - 0.5) / m)
    fig = new_figure(ONE_COL, 2.6)
    ax = fig.subplots()
    different = (e["verdict"] == "different").to_numpy()
    ax.scatter(q[~different], e["size"][~different], s=14, facecolors="none", edgecolors="0.3", lw=0.7)
    ax.scatter(q[different], e["size"][different], s=14, color="0.1")
    ax.set_ylim(0, max(float(e["size"].max()), margin) * 1.15)
    ax.axhline(margin, color="0.5", lw=0.7, ls="--")
    ax.text(0.98, margin, f"margin {margin:g}", transform=ax.get_yaxis_transform(), va="bottom", ha="right",
            fontsize=LABEL_PT - 1, color="0.4")
    ax.set_xlabel("half-normal quantile")
    ax.set_ylabel("|effect|")
    named = different | (np.arange(m) >= m - NAMED)  # the largest, and every effect found different
    _label_points(ax, q[named], e["size"].to_numpy(float)[named], e["term"][named].tolist())
    res.files = save_figure(fig, out_dir, res.name)
    res.caption = ("Half-normal plot of every estimated effect: effects that are noise fall near a line through "
                   f"0; filled: found different; the dashed line is the margin. The {NAMED} largest effects and "
                   "every effect found different are named (effects.csv has them all).")
    return res
