"""The front page of a suite: every variant on several data sets, compared across them.

Each data set has its own report (``<out>/<label>/``: table, figures, failures, from its
records alone). ``<out>/index.md`` adds what only the suite can show, in the form of
benchmark papers (Demšar 2006):

* ``suite_table``: per data set, each variant's headline metric (mean ± std over seeds)
  and its Δ to the baseline with the data set's own significance mark (†, Holm within its
  family on that data set), and its mean rank over the data sets;
* the Friedman test of the ranks, the Iman–Davenport F, and the Nemenyi critical
  difference (``stats.friedman``), drawn as a critical-difference diagram;
* a heat map of Δ per variant and data set with the marks.
Only variants with a score on every data set are ranked; the others are named.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from ..fileio import write_text_atomic
from ..metrics import metric as metric_info
from ..spec.settings import ReportSettings
from ..store.runs_table import runs_frame
from .describe import mixed_text
from .index import figures_markdown
from .ranks import FEW_EXACT, friedman
from .stats import ALPHA
from .style import STYLE, FigureResult, discard_unmade, palette
from .suite_figures import cd_diagram, delta_heatmap
from .tables import DASH, latex_table, markdown_table, p_text

FEW_DATASETS = 5  # below this, say that the rank test has little power (Demšar's advice)


@dataclass(frozen=True)
class Part:
    """What a suite's front page shows of one data set's report."""
    summary: pd.DataFrame | None  # None: no run of the data set finished ok
    order: list
    table_md: str
    n_records: int
    n_missing: int


def suite_frames(parts: dict[str, Part]) -> dict[str, pd.DataFrame]:
    """Per data set and variant (the "mean" form): the headline's mean and std over seeds,
    Δ to the baseline and its mark. ``scores`` is data sets x variants (what is ranked):
    the mean over seeds, a seed with a failed or diverged run scoring 0 (``fail0``) where
    the headline is higher-is-better, so that a variant is never ranked by its survivors
    alone; the others are variants x data sets."""
    order = list(dict.fromkeys(v for p in parts.values() for v in p.order))
    frames = {}
    for name, column in (("mean", "{m}_mean"), ("std", "{m}_std"), ("delta", "delta"),
                         ("significant", "different"), ("fail0", "fail0_mean")):
        table = {}
        for label, p in parts.items():
            s = p.summary[p.summary["form"] == "mean"].set_index("variant")
            s = s.assign(different=s["verdict"] == "different")
            m = s["metric"].iloc[0]
            table[label] = s[column.format(m=m)].reindex(order)
        frames[name] = pd.DataFrame(table)
    frames["significant"] = frames["significant"].fillna(False).astype(bool)
    frames["scores"] = frames["fail0"].where(frames["fail0"].notna(), frames["mean"]).T
    return frames


def _cell(mean, std, delta, significant, is_baseline: bool) -> str:
    if not np.isfinite(mean):
        return DASH
    text = f"{mean:.3f}" + (f" ± {std:.3f}" if np.isfinite(std) else "")
    if is_baseline:
        return text
    return text + (f" ({delta:+.3f}{'†' if significant else ''})" if np.isfinite(delta) else "")


def friedman_text(result, label: str) -> str:
    """The rank test in one paragraph, with its caveats."""
    n, k = result.n_datasets, result.n_variants
    if not np.isfinite(result.statistic):
        text = f"Mean ranks of {label} over {n} data sets and {k} variants; {result.note}."
    else:
        f = "∞" if result.iman_davenport_f == np.inf else f"{result.iman_davenport_f:.2f}"
        text = (f"Friedman test of the ranks of {label} over {n} data sets and {k} variants: "
                f"χ²({k - 1}) = {result.statistic:.2f}; Iman–Davenport F({k - 1}, {(k - 1) * (n - 1)}) "
                f"= {f}; ")
        text += (f"{p_text(result.p)} by permutation of the ranks within each data set (with "
                 f"{n} data sets the χ² and F approximations do not hold). " if n < FEW_EXACT else
                 f"{p_text(result.p)} (χ²), {p_text(result.iman_davenport_p)} (F). ")
        text += nemenyi_text(result)
    if n < FEW_DATASETS:
        text += (f" With {n} data sets the rank test has little power: a difference it does not "
                 f"find is not evidence of no difference; the per-data-set tests (†) are the "
                 f"stronger evidence here.")
    if result.left_out:
        text += f" Not ranked (no score on every data set): {', '.join(result.left_out)}."
    return text


def nemenyi_text(result) -> str:
    """The Nemenyi post-hoc in one sentence, or why it is not drawn."""
    k, cd = result.n_variants, result.cd
    if not np.isfinite(cd):
        return ""
    if cd >= k - 1:
        return (f"No pair of variants can be told apart: the Nemenyi critical difference "
                f"(CD = {cd:.2f} at α = {result.alpha:g}) is at least the largest possible "
                f"rank gap ({k - 1}), so no critical-difference diagram is drawn.")
    if not result.p < result.alpha:
        return (f"Friedman does not reject at α = {result.alpha:g}, so no post-hoc comparison "
                f"and no critical-difference diagram.")
    return (f"Nemenyi critical difference at α = {result.alpha:g}: CD = {cd:.2f} "
            f"(variants whose mean ranks differ by less are not told apart).")


def suite_table(frames: dict, result, baseline: str | None):
    """(headers, aligns, rows) of the cross-data-set table."""
    mean = frames["mean"]
    labels = list(mean.columns)
    headers = ["Variant", *labels, "Mean rank"]
    rows = []
    for v in mean.index:
        cells = [_cell(mean.at[v, d], frames["std"].at[v, d], frames["delta"].at[v, d],
                       frames["significant"].at[v, d], v == baseline) for d in labels]
        rank = result.mean_ranks.get(v, np.nan)
        rows.append([v, *cells, f"{rank:.2f}" if np.isfinite(rank) else DASH])
    return headers, ["l", *"r" * len(labels), "r"], rows


NO_RANK_TEST = ("No rank test across the data sets: the sweep declares them too alike for one (`[report] "
                "rank_test = false`, e.g. two data sets from one generator), so the mean ranks are descriptive; "
                "the verdicts on each data set are the evidence.")


def _write_across(out: Path, name: str, records: list[dict], ranked: dict[str, Part], metric: str,
                  baseline: str | None, rank_test: bool = True, draw: bool = True) -> list[str]:
    """The comparison across the data sets that have a table: the suite tables, ranks.csv
    and the figures; returns the markdown of its section. Without ``rank_test`` the mean
    ranks are shown, with no Friedman test and no critical-difference diagram."""
    info = metric_info(metric)
    frames = suite_frames(ranked)
    result = friedman(frames["scores"], info.higher_is_better, ALPHA)
    better = "higher" if info.higher_is_better else "lower"
    caption = (f"Suite {name}: {info.label} ({better} is better) of every variant on {len(ranked)} data "
               f"sets, mean ± std over seeds, (Δ to {baseline or 'the baseline'}; † significant on "
               f"that data set after Holm correction within its family), and the mean rank over "
               f"the data sets (1 = best; a variant with a failed or diverged seed is ranked with "
               f"that seed scoring 0 where higher is better).")
    note = friedman_text(result, info.label) if rank_test else NO_RANK_TEST
    table = suite_table(frames, result, baseline)
    write_text_atomic(out / "suite_table.md", markdown_table(*table, caption, note))
    write_text_atomic(out / "suite_table.tex", latex_table(*table, caption, f"{name}-suite", note))
    tidy = pd.concat({k: frames[k].stack(future_stack=True) for k in ("mean", "std", "delta", "significant")},
                     axis=1).rename_axis(["variant", "dataset"]).reset_index()
    tidy["mean_rank"] = tidy["variant"].map(result.mean_ranks)
    tidy["metric"] = metric
    write_text_atomic(out / "suite_table.csv", tidy.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    write_text_atomic(out / "ranks.csv", result.ranks.rename_axis("dataset").to_csv(float_format="%.6g",
                                                                                      lineterminator="\n"))
    if not draw:
        skipped = FigureResult.skipped("suite_heatmap", "cd_diagram")
        discard_unmade(out, skipped)
        return [markdown_table(*table, caption, note), figures_markdown(skipped)]
    colors = palette(r["variant"] for r in records)
    with matplotlib.rc_context(STYLE):
        figures = [delta_heatmap(frames["delta"].drop(index=[baseline], errors="ignore"),
                                 frames["significant"].drop(index=[baseline], errors="ignore"),
                                 info.label, info.higher_is_better, out),
                   cd_diagram(result, colors, out) if rank_test
                   else FigureResult("cd_diagram", note="not drawn: no rank test (`[report] rank_test = false`)")]
    discard_unmade(out, figures)
    return [markdown_table(*table, caption, note), figures_markdown(figures)]


def _sections(parts: dict[str, Part], unrecorded) -> list[str]:
    """Each data set's part of the front page: its counts, a link and its table."""
    sections = []
    for label, p in parts.items():
        missing = f", {p.n_missing} planned run(s) without a record" if p.n_missing else ""
        sections += [f"### {label}\n", f"{p.n_records} run records{missing}. Full report: "
                     f"[{label}/index.md]({label}/index.md).\n", p.table_md]
    for label in unrecorded:
        sections += [f"### {label}\n", "No run records: every planned run of this data set is missing "
                     "(the sweep's command runs them).\n"]
    return sections


def write_suite(out: Path, name: str, results_dir: str, records: list[dict], parts: dict[str, Part],
                settings: ReportSettings, notes: list[str], baseline: str | None, unrecorded=(),
                draw: bool = True) -> Path:
    """Write the suite's tables, figures and ``index.md`` into ``out``. The data sets whose
    records hold no ok run, and those planned (``unrecorded``) without any record, are
    named and left out of the comparison."""
    ranked = {label: p for label, p in parts.items() if p.summary is not None}
    out.mkdir(parents=True, exist_ok=True)
    metric = settings.metric
    across = (_write_across(out, name, records, ranked, metric, baseline, settings.rank_test, draw) if ranked
              else ["No data set has a run that finished ok: there is nothing to compare.\n"])
    if not ranked:
        discard_unmade(out, FigureResult.skipped("suite_heatmap", "cd_diagram"))
    if left_out := [label for label in parts if label not in ranked]:
        across.append(f"Not compared (no run finished ok): {', '.join(left_out)}.\n")
    if unrecorded:
        across.append(f"Not compared (planned, without any record): {', '.join(unrecorded)}.\n")
    write_text_atomic(out / "runs.csv", runs_frame(records).to_csv(index=False, lineterminator="\n"))
    planned = f"; planned, without records: {', '.join(unrecorded)}" if unrecorded else ""
    text = [
        f"# Ablation suite: {name}\n",
        f"Built from the {len(records)} run records in `{results_dir}` by `unet-ablate report` (no "
        f"training): every variant and seed on {len(parts)} data sets ({', '.join(parts)}{planned}). Files: "
        f"[suite_table.md](suite_table.md), [suite_table.tex](suite_table.tex), "
        f"[suite_table.csv](suite_table.csv), [ranks.csv](ranks.csv), [runs.csv](runs.csv) (every "
        f"run, with its data set).\n",
        *([f"**{mixed}**\n"] if (mixed := mixed_text(records)) else []),
        "## Across data sets\n",
        *across,
        "## Each data set\n",
        "Each data set's table is its own report's (Methods, figures and failures are there).\n",
        *_sections(parts, unrecorded),
    ]
    if notes:
        text += ["## Notes\n", "\n".join(f"- {n}" for n in notes) + "\n"]
    path = out / "index.md"
    write_text_atomic(path, "\n".join(text))
    return path
