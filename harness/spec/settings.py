"""``ReportSettings``: what a sweep's report concludes on, declared before any run (the
``[report]`` table), held by the sweep and by its ``sweep.json``, and handed to the report as
one object.

```toml
[report]
metric = "dice"      # the headline (harness.metrics.METRICS); checkpoints are selected on it
margin = 0.01        # |Δ| that does not matter, in the headline's units (default: the metric's)
rank_test = true     # a suite's Friedman test across data sets (false: data sets too alike)
```

The declared margin belongs to the declared headline: any other metric (a panel of the
report, a headline chosen after the runs with ``--metric``) is judged at its own default
margin (``metrics.Metric.margin``), the only place a default margin is written.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import boolean, check_keys, number, table, text
from ..metrics import metric as metric_info

KEYS = ("metric", "margin", "rank_test")


@dataclass(frozen=True)
class ReportSettings:
    """The headline ``metric``, its equivalence ``margin`` (> 0, in the metric's units; None
    given: the metric's own), and whether a suite's data sets are rank-tested (``rank_test``).
    The checkpoints of every run are selected on ``metric`` unless ``[protocol] select`` says
    otherwise (``select``)."""

    metric: str = "dice"
    margin: float | None = None
    rank_test: bool = True

    def __post_init__(self):
        try:
            info = metric_info(text("report.metric", self.metric))
        except ValueError as e:
            raise ValueError(f"report.metric: {e}") from None
        margin = info.margin if self.margin is None else number("report.margin", self.margin, 0, strict=True)
        object.__setattr__(self, "margin", float(margin))
        boolean("report.rank_test", self.rank_test)

    @classmethod
    def from_table(cls, value: Any) -> "ReportSettings":
        """From a sweep's ``[report]`` table (or sweep.json's keys); errors name the key."""
        d = table("report", value, "keys (metric, margin, rank_test)")
        check_keys(d, KEYS, "report")
        return cls(**d)

    @property
    def select(self) -> str:
        """The metric training selects its checkpoints on, unless the protocol names one."""
        return self.metric

    def margin_for(self, metric: str) -> float:
        """The equivalence margin of ``metric``: the declared one for the headline, else the
        metric's own default."""
        if metric != self.metric:
            return metric_info(metric).margin
        assert self.margin is not None  # __post_init__ sets it: the declared margin or the metric's own
        return self.margin

    def with_headline(self, metric: str | None) -> "ReportSettings":
        """These settings with ``metric`` as the headline (``report --metric``): a headline
        chosen after the runs is judged at its own default margin."""
        if metric is None or metric == self.metric:
            return self
        return dataclasses.replace(self, metric=metric, margin=None)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
