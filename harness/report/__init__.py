"""The report: paper-ready tables and figures, with honest statistics, from a results folder.

Modules, one job each:
  stats     the summary statistics (mean ± std, paired Δ, bootstrap CI, Wilcoxon, Holm)
  describe  what the records say about the setup, as caption / methods text
  tables    table.md, table.tex (booktabs), table.csv, runs.csv
  figures   accuracy_cost, ablation, curves, qualitative, deep_supervision (pdf + png)
  index     the front page index.md
  build     ``build_report``: all of the above from a results folder
  command   ``add_report_command``: ``unet-ablate report RESULTS_DIR [--out DIR]``
"""
from __future__ import annotations

from pathlib import Path

from .command import add_report_command

__all__ = ["add_report_command", "build_report"]


def build_report(results_dir, out_dir=None) -> Path:
    """Write the report of ``results_dir`` into ``out_dir`` (default ``reports/<sweep>``) and
    return that folder; see ``harness.report.build``. (Imported on use: it loads matplotlib.)"""
    from .build import build_report as build

    return build(results_dir, out_dir)
