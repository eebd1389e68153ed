"""The report: paper-ready tables and figures, with honest statistics, from a results folder.

It reads the results store only (``harness.store.records``), never a data set, and never trains.
Modules, one job each:
  stats           the inference: the seeds x images model, bootstrap, sign-flip, Holm (numpy, scipy)
  summary         the summary table: run accounting, declared families, Δ per row, verdicts, cost
  labels          variant order, families, status words
  describe        what the records say about the setup, as caption / methods text
  tables          table.md, table.tex (booktabs), table.csv, runs.csv; number and p-value formats
  style           the figures' sizes, fonts, palette and saving (pdf + png)
  figures         accuracy_cost, ablation, curves, deep_supervision
  qualitative     the qualitative figure (kept predictions against references)
  effects         factorial designs: main effects and interactions, with verdicts
  effects_figures main-effects, interaction and half-normal plots
  ranks           a suite's ranks and Friedman test
  suite           a suite's report across data sets (tables, heat map, CD diagram)
  suite_figures   the CD diagram and the Δ heat map
  tuning          ``[tune]``: the point each variant keeps, from validation scores alone; tuning.csv
  power           ``plan --power``: MDE and seeds needed, from a pilot
  index           the front page index.md
  build           ``build_report``: all of the above from a results folder
The ``report`` command itself lives with the other commands in ``harness.cli``.
"""
from .build import build_report

__all__ = ["build_report"]
