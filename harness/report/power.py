"""Power before a sweep runs (``unet-ablate plan SWEEP --power PILOT``): from a pilot results
folder, what the planned number of seeds would conclude about each comparison.

Each compared row of the pilot's report gives Δ, its standard error and the part of it that
more seeds do not shrink (``se_fixed``: the image or fold x variant term). At the planned
seeds (``SeedModel.scaled``), at the pilot's family level, the row's minimum detectable
effect says whether the observed Δ would be found with 80% power; the interval expected at
the observed variances whether it would be shown equivalent; ``seeds_needed`` how many seeds
either would take. The observed Δ of a pilot is itself noisy: this is planning, not a result.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..spec.settings import ReportSettings
from .build import dataset_labels, headline_summary, read_results
from .stats import SeedModel
from .summary import MIN_SEEDS, expected_verdict, seeds_needed

POWER_COLUMNS = ["dataset", "variant", "form", "delta", "margin", "pilot_seeds", "mde_pilot", "planned_seeds",
                 "mde_planned", "expected", "seeds_needed"]


def power_table(results_dir, seeds: int, metric: str | None = None) -> pd.DataFrame:
    """One row per compared (data set, variant, form) of the pilot in ``results_dir``: its Δ,
    MDE at the pilot's seeds and at ``seeds``, the verdict expected there, and the seeds that
    would settle it (NaN beyond ``summary.MOST_SEEDS``)."""
    plan, records, _, _ = read_results(Path(results_dir))  # as the report reads them ([tune]: the chosen runs)
    settings = (plan.report if plan else ReportSettings()).with_headline(metric)
    rows = []
    for label in dataset_labels(records, plan):
        mine = [r for r in records if r["dataset"] == label]
        sub = plan.for_dataset(label) if plan and len(plan.datasets) > 1 else plan
        _, _, table = headline_summary(mine, sub, settings)
        for row in table.itertuples():
            if not np.isfinite(row.se):
                continue
            model = SeedModel(row.delta, row.se, row.df, row.se_fixed ** 2)
            planned = model.scaled(seeds, row.n_seeds) if seeds != row.n_seeds else model
            if expected_verdict(model, row.ci_level, row.margin) != "inconclusive":
                needed = row.n_seeds
            else:
                needed = seeds_needed(model, row.n_seeds, row.ci_level, row.margin)
            rows.append({"dataset": label, "variant": row.variant, "form": row.form, "delta": row.delta,
                         "margin": row.margin, "pilot_seeds": row.n_seeds, "mde_pilot": row.mde,
                         "planned_seeds": seeds, "mde_planned": planned.mde(row.ci_level),
                         "expected": expected_verdict(planned, row.ci_level, row.margin),
                         "seeds_needed": np.nan if needed is None else needed})
    if not rows:
        raise ValueError(f"{results_dir}: no comparison with a test in the pilot (each needs at least "
                         f"{MIN_SEEDS} ok seeds of a variant and of the baseline, paired)")
    return pd.DataFrame(rows, columns=POWER_COLUMNS)


def power_text(table: pd.DataFrame, pilot: str) -> str:
    """The power table as ``plan --power`` prints it."""
    show = table.copy()
    if show["dataset"].nunique() == 1:
        show = show.drop(columns="dataset")
    if (show["form"] == "mean").all():
        show = show.drop(columns="form")
    show["delta"] = show["delta"].map(lambda v: f"{v:+.4f}")
    for c in ("mde_pilot", "mde_planned", "margin"):
        show[c] = show[c].map(lambda v: f"{v:.4f}")
    show["seeds_needed"] = show["seeds_needed"].map(lambda v: "> 100" if pd.isna(v) else str(int(v)))
    return (f"Power from the pilot {pilot} (observed Δ and variances; at the pilot's family level, 80% power):\n"
            + show.to_string(index=False)
            + "\nexpected: the verdict at the planned seeds if the true Δ were the observed one; "
              "seeds_needed: the fewest seeds that would make the row conclusive.")
