"""The choice of ``[tune]`` (``harness.spec.tuning``), made from the records' validation scores
alone: per variant (or variant and seed), the grid point whose ok runs have the best mean
validation score on the metric they were selected on (``train.best_val_score`` in the
direction of ``train.selected_on``; ties: the first point in the grid's order). Only the
chosen runs go on to the tables, verdicts and figures; ``tuning.csv`` lists every point.
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import pandas as pd

from ..metrics import metric as metric_info
from ..spec.choices import TRAIN_LOSS

TUNING_COLUMNS = ["dataset", "variant", "seed", "point", "val_score", "selected_on", "n_runs", "chosen", "edge"]


def _point(r: dict) -> tuple:
    return tuple(r["tuning"]["values"].items())


def _higher(selected_on: str) -> bool:
    return selected_on != TRAIN_LOSS and metric_info(selected_on).higher_is_better


def choose_tuned(records: list[dict]) -> tuple[list[dict], pd.DataFrame | None]:
    """(the records the report analyses: every non-candidate and the chosen candidates, the
    table of every point of every tuned group); (records, None) without candidates."""
    candidates = [r for r in records if r.get("tuning")]
    if not candidates:
        return records, None
    groups: dict[tuple, dict[tuple, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in candidates:
        seed = r["seed"] if r["tuning"]["by"] == "variant-seed" else ""
        groups[(r["dataset"], r["variant"], seed)][_point(r)].append(r)
    rows, chosen = [], set()
    for (dataset, variant, seed), points in groups.items():
        scored = {p: _mean_score(rs) for p, rs in points.items()}
        best = _best(scored)
        if best is not None:
            chosen |= {id(r) for r in points[best]}
        for p, (score, selected_on, n) in scored.items():
            rows.append({"dataset": dataset, "variant": variant, "seed": seed,
                         "point": ", ".join(f"{f} {v}" for f, v in p), "val_score": score,
                         "selected_on": selected_on, "n_runs": n, "chosen": p == best,
                         "edge": p == best and _at_edge(best, list(points))})
    kept = [r for r in records if not r.get("tuning") or id(r) in chosen]
    return kept, pd.DataFrame(rows, columns=TUNING_COLUMNS)


def _mean_score(runs: list[dict]) -> tuple[float, str, int]:
    """(mean validation score of the ok runs, the metric they were selected on, their count)."""
    ok = [r for r in runs if r["status"] == "ok" and r["train"] and r["train"]["best_val_score"] is not None
          and math.isfinite(r["train"]["best_val_score"])]
    if not ok:
        return math.nan, runs[0]["train"]["selected_on"] if runs[0]["train"] else "", 0
    return (sum(r["train"]["best_val_score"] for r in ok) / len(ok), ok[0]["train"]["selected_on"], len(ok))


def _best(scored: dict) -> tuple | None:
    """The point of the best mean score (NaN never wins; ties: the first)."""
    finite = [(p, s) for p, (s, sel, _) in scored.items() if math.isfinite(s)]
    if not finite:
        return None
    higher = _higher(next(sel for s, sel, _ in scored.values() if sel))
    return (max if higher else min)(finite, key=lambda ps: ps[1])[0]


def _at_edge(best: tuple, points: list[tuple]) -> bool:
    """A numeric value of the chosen point at the lowest or highest value its field was tried at."""
    for i, (_, value) in enumerate(best):
        tried = [p[i][1] for p in points]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and len(set(tried)) > 2 \
                and value in (min(tried), max(tried)):
            return True
    return False


def tuning_text(table: pd.DataFrame) -> str:
    """One sentence per tuned variant for the front page: what it chose, flags at an edge."""
    chosen = table[table["chosen"]]
    parts = [f"`{r.variant}`{f' seed {r.seed}' if r.seed != '' else ''} chose {r.point}"
             + (" (at the edge of its grid: widen the grid)" if r.edge else "") for r in chosen.itertuples()]
    undecided = sorted(set(table["variant"]) - set(chosen["variant"]))
    return ("Tuned on validation scores only (the test split played no part): " + "; ".join(parts) + "."
            + (f" No choice for {', '.join(undecided)}: no ok candidate run." if undecided else ""))


def tuning_methods(table: pd.DataFrame) -> str:
    """The methods' sentence on tuning: the grid, the rule, and that test data played no part."""
    by_seed = (table["seed"] != "").any()
    selected = ", ".join(sorted(set(table["selected_on"]) - {""}))
    grid = ", ".join(dict.fromkeys(table["point"]))
    return (f"**Tuning.** Every variant trained at each point of the grid ({grid}); "
            f"per {'variant and seed' if by_seed else 'variant, over the mean of its seeds'}, the point with the "
            f"best mean validation score ({selected}) was kept, and only its runs enter the tables, verdicts and "
            f"figures. The choice reads validation scores alone: the test split played no part in it.")


def drop_unchosen(plan, records_before: list[dict], kept: list[dict]):
    """The plan without the runs of points not chosen (they are no missing runs)."""
    dropped = {r["key"] for r in records_before} - {r["key"] for r in kept}
    return dataclasses.replace(plan, runs=tuple(e for e in plan.runs if e.key not in dropped)) if plan else plan
