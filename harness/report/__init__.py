"""The report: paper-ready tables and figures, with honest statistics, from a results folder.

It reads the results store only (``harness.records``), never a data set, and never trains.
Modules, one job each:
  stats     the inference: two-stage bootstrap, sign-flip and seed tests, Holm (pure numpy)
  summary   the summary table: run accounting, declared families, Δ per row, cost
  describe  what the records say about the setup, as caption / methods text
  tables    table.md, table.tex (booktabs), table.csv, runs.csv; number and p-value formats
  figures   accuracy_cost, ablation, curves, qualitative, deep_supervision (pdf + png)
  index     the front page index.md
  build     ``build_report``: all of the above from a results folder
The ``report`` command itself lives with the other commands in ``harness.cli``.
"""
from .build import build_report

__all__ = ["build_report"]
