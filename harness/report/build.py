"""``build_report``: a results folder in, a report folder out (tables, figures, index.md).

Reads only the results store (``harness.store.records``: the records, ``sweep.json`` and the
stored test samples); never trains and never loads a data set. The same records give
byte-identical tables: rows are sorted deterministically and the bootstrap uses a fixed seed.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..fileio import check_folder_path, write_text_atomic
from ..spec.settings import ReportSettings
from ..store.layout import Layout
from ..store.records import load_records, stray_records
from ..store.runs_table import runs_frame
from ..store.samples import read_samples
from ..store.sweep_plan import read_plan
from .describe import caption, methods
from .effects import write_factorial
from .figures import REPORT_FIGURES, draw_figures
from .index import conclusions_markdown, write_index
from .labels import baseline_variant, variant_order
from .style import FIGURES, FigureResult, discard_unmade
from .suite import Part, write_suite
from .summary import check_metric, shown_metrics, summary_table
from .tables import markdown, write_tables
from .tuning import choose_tuned, drop_unchosen, tuning_methods, tuning_text


def sweep_name(records: list[dict], plan, results_dir: Path) -> str:
    """The records' sweep name (when they agree), else the plan's, else the folder's."""
    names = sorted({r["sweep"] for r in records if r["sweep"]})
    name = names[0] if len(names) == 1 else (plan.name if plan else Path(results_dir).resolve().name)
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "report"


def build_report(results_dir, out_dir=None, metric: str | None = None, figures: bool = True) -> Path:
    """Write the report of ``results_dir`` into ``out_dir`` (default ``reports/<sweep>``)
    and return that folder. ``metric`` is the headline (default: the sweep's ``[report]
    metric``, else Dice). Without ``figures``, tables and text only (seconds faster; the
    figure files of an earlier build are removed). A missing folder or one without records
    is a ValueError.

    A suite (records of several data sets) gets one report per data set in
    ``<out>/<data set label>/`` and, in ``<out>/index.md``, the comparison across them
    (``suite.write_suite``)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"{results_dir}: " + ("is a file, expected a" if results_dir.exists() else "no such")
                         + " results folder")
    plan, records, notes, tuning = read_results(results_dir)
    name = sweep_name(records, plan, results_dir)
    out = Path(out_dir) if out_dir is not None else Path("reports") / name
    check_folder_path(out, "a report folder")
    if plan is None:
        notes.append("no sweep.json in the results folder: runs that were planned and never "
                     "recorded cannot be counted")
    declared = plan.report if plan else ReportSettings()
    if metric and plan and metric != declared.metric:
        notes.append(f"the headline is {metric!r} (`--metric`), not the sweep's declared {declared.metric!r}: "
                     f"a headline chosen after the runs is exploratory, and the declared margin "
                     f"({declared.margin}) applies to {declared.metric!r} only (here: {metric!r}'s default)")
    try:
        settings = declared.with_headline(metric)
    except ValueError as e:
        raise ValueError(f"--metric: {str(e).removeprefix('report.metric: ')}") from None
    metric = settings.metric
    labels = dataset_labels(records, plan)
    if len(labels) == 1:
        build_one(results_dir, records, plan, out, name, settings, notes, figures, tuning)
        write_tuning(out, tuning)
        return out
    groups = {label: [r for r in records if r["dataset"] == label] for label in labels}
    unrecorded = [label for label, mine in groups.items() if not mine]  # planned, no record at all
    groups = {label: mine for label, mine in groups.items() if mine}
    for label, mine in groups.items():  # a metric one data set lacks: one line, nothing written
        check_metric(mine, metric, f"data set {label!r}: ")
    parts = {label: build_one(results_dir, mine, plan.for_dataset(label) if plan else None,
                              out / label, f"{name} / {label}", settings, [], figures)
             for label, mine in groups.items()}
    write_suite(out, name, str(results_dir), records, parts, settings, notes,
                plan.baseline if plan else baseline_variant(records), unrecorded, figures)
    write_tuning(out, tuning)
    return out


def read_results(results_dir: Path) -> tuple:
    """(plan, the records to report, notes, the tuning table or None) of a results folder:
    records that are not its runs left out with a note; of ``[tune]`` candidates, the chosen."""
    plan = read_plan(results_dir)
    skipped: list[str] = []
    records = load_records(results_dir, plan.keys if plan else None, skipped)
    notes = [f"left out, {reason}" for reason in skipped]
    if plan and (stray := stray_records(results_dir, plan.keys)):
        notes.append(f"{len(stray)} record(s) in {Layout(results_dir).runs} are not runs of the sweep in "
                     f"sweep.json and were left out (e.g. {stray[0]})")
    kept, tuning = choose_tuned(records)
    if tuning is not None:
        notes.append(tuning_text(tuning))
    return drop_unchosen(plan, records, kept), kept, notes, tuning


def write_tuning(out: Path, tuning: pd.DataFrame | None) -> None:
    """tuning.csv (every point tried, its mean validation score, the choice); none without tuning."""
    if tuning is None:
        (out / "tuning.csv").unlink(missing_ok=True)
    else:
        write_text_atomic(out / "tuning.csv", tuning.to_csv(index=False, float_format="%.6g", lineterminator="\n"))


def dataset_labels(records: list[dict], plan) -> list[str]:
    """The data sets of the records, in the sweep's order (plans of older versions: as found)."""
    planned = list(plan.datasets) if plan and len(plan.datasets) > 1 else []
    return planned + sorted({r["dataset"] for r in records} - set(planned))


def headline_summary(records: list[dict], plan, settings: ReportSettings
                     ) -> tuple[str | None, list[str], pd.DataFrame]:
    """(baseline, variant order, summary table of the headline) of one data set's records,
    as its report has them."""
    baseline = plan.baseline if plan else baseline_variant(records)
    order = variant_order(records, baseline, plan.variants if plan else None)
    return baseline, order, summary_table(records, baseline, order, plan, settings.metric, settings)


def build_one(results_dir: Path, records: list[dict], plan, out: Path, name: str, settings: ReportSettings,
              notes: list[str], draw: bool = True, tuning: pd.DataFrame | None = None) -> Part:
    """The report of one data set's records into ``out``; returns what a suite's front
    page shows of it."""
    notes, metric = list(notes), settings.metric
    recorded = {r["key"] for r in records}
    missing = [r for r in plan.runs if r.key not in recorded] if plan else None
    if not any(r["status"] == "ok" for r in records):
        return _failures_only(results_dir, records, plan, out, name, metric, notes, missing)
    baseline, order, summary = headline_summary(records, plan, settings)
    if baseline is None:
        notes.append("no run is flagged as the baseline (is_baseline), so no Δ, intervals or tests")
    panels = {m: summary if m == metric else summary_table(records, baseline, order, plan, m, settings)
              for m in shown_metrics(records, metric)}
    cap = caption(records, summary, name, baseline)
    out.mkdir(parents=True, exist_ok=True)  # only now: a bad --metric writes nothing
    write_tables(records, summary, cap, name, out)

    keys = sorted({r["data"]["key"] for r in records}) if draw else []  # (only figures show samples)
    samples = {key: read_samples(results_dir, key) for key in keys}
    figures = (draw_figures(records, summary, order, baseline, samples, out, panels) if draw
               else FigureResult.skipped(*REPORT_FIGURES))
    discard_unmade(out, figures)
    table_md = markdown(summary, cap)
    effects = write_factorial(records, plan, summary, out, name, settings, figures, draw)
    write_index(out, sweep_name=name, results_dir=str(results_dir), n_records=len(records),
                methods=methods(records, summary, baseline) + (f"\n\n{tuning_methods(tuning)}" if tuning is not None
                                                                 else ""), table_md=table_md,
                figures=figures, records=records, notes=notes, missing=missing,
                command=plan.command if plan else "", conclusions=conclusions_markdown(summary), effects=effects)
    return Part(summary, order, table_md, len(records), len(missing or []))


def _failures_only(results_dir: Path, records: list[dict], plan, out: Path, name: str, metric: str,
                   notes: list[str], missing) -> Part:
    """The report of records none of which is ok: no table and no figures, but the front
    page lists every failed and diverged run (and the missing ones), so failures are seen."""
    check_metric(records, metric)  # an unknown metric is still one line
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "runs.csv", runs_frame(records).to_csv(index=False, lineterminator="\n"))
    for stale in ("table.md", "table.tex", "table.csv", "caption.txt", *(f"{f}.{s}" for f in FIGURES
                                                                          for s in ("pdf", "png"))):
        (out / stale).unlink(missing_ok=True)  # an earlier build's, which the records no longer give
    text = (f"No run of these records finished ok ({len(records)} failed or diverged), so there is no "
            f"table and no figure: the failures are listed below.")
    write_index(out, sweep_name=name, results_dir=str(results_dir), n_records=len(records), methods=text,
                table_md=text + "\n", figures=[], records=records, notes=notes, missing=missing,
                command=plan.command if plan else "")
    return Part(None, [], text + "\n", len(records), len(missing or []))
