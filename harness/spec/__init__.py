"""What a sweep asks, before anything runs: the sweep file and its variants, the run
specification and its key, the names a protocol chooses from, factorial designs, and the
report's settings.

  sweep      sweep files (TOML): data, protocol, measure, seeds, report (``Sweep``, ``load_sweep``)
  expand     ``[variants]`` expanded: one-factor, grid, factorial, explicit; network and recipe axes
  recipes    named training recipes, from the seeds' code (``seed001``, ...)
  protocol   ``RunSpec`` = arch + data + protocol + measure + seed; its key
  choices    registries by name: optimizers, schedules, losses, precisions
  design     two-level factorial designs: points, generators, aliases, contrasts
  tuning     ``[tune]``: a grid of protocol fields each variant is tuned over, on validation
  settings   ``ReportSettings``: the headline metric, its margin, the rank test, selection
"""
