"""Who runs what, and when: the runs a sweep holds, one run from claim to record, the
runners (here, worker processes, cluster jobs), and how far a sweep has come.

  planning   ``PlannedRun``s of a sweep and the checks made before anything is written
  one_run    ``run_one`` (train, score, measure one run) and ``run_claimed``, every runner's path
  dispatch   ``run_sweep`` / ``submit_sweep``: every planned run without a record, resumable
  workers    local worker processes (``--workers N``)
  cluster    submitit jobs (``--launcher slurm|local``), requeued on preemption
  claims     atomic claims with a heartbeat; stale ones taken over
  status     ``unet-ablate status``: planned, done, running, missing, ETA
  forecast   ``unet-ablate plan``: what a sweep holds and what it will cost
"""
