"""The results folder, the only thing runs and the report share: where each entry lives,
the run record (its schema, validation and reading), the sweep as planned (sweep.json),
kept predictions, runs.csv, and the environment a record names.

  layout       the entries of a results folder, by name (the only module that spells them)
  records      the run record: build, validate, read; per-image scores from its counts
  record_types the run record as types (``RunRecord`` and its sections) and the validator they drive
  sweep_plan   ``sweep.json``: the sweep as planned (``SweepPlan``), written before any run
  samples      kept test predictions (for the qualitative figure)
  runs_table   runs.csv: one row per record; the console summary
  environment  package versions, device, threads and git commit of a run
"""
