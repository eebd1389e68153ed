"""One run's work, given its spec and its data: the device and precision it runs under, the
training loop, patches, whole-image prediction, scoring, static cost and measurement.

  execution  the device, dtype, memory format and compiler of one run (``Execution``)
  train      ``fit``: patches, loss, optimizer, schedule, model selection, in-run checkpoints
  batches    patch sampling and prefetched batches
  predict    whole-image prediction (overlap-tile) of each inference form
  evaluate   per-image confusion counts and whole-map scores on a split
  cost       parameters and MACs (FlopCounterMode on ``meta``; thop cross-check)
  measure    throughput, latency and memory; the device's peak rate and MFU
  monitor    TensorBoard event files of a run (optional)
"""
