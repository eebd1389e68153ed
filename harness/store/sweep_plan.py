"""``sweep.json``: the sweep as planned (``SweepPlan``), written before any run, read by the
report to count planned runs that have no record and to know each variant's family."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from variants.spec import is_int

from ..config import NAME
from ..fileio import write_json_atomic
from ..spec.design import design as make_design
from ..spec.settings import KEYS as REPORT_KEYS
from ..spec.settings import ReportSettings
from .layout import Layout

FAMILIES = ("baseline", "one-factor", "grid", "factorial", "explicit")


@dataclass(frozen=True)
class PlanEntry:
    key: str
    variant: str
    seed: int
    dataset: str = ""
    fold: int | None = None


@dataclass(frozen=True)
class SweepPlan:
    """What ``sweep.json`` holds: the sweep as planned, written before any run, whatever has
    run so far. ``families`` declares the question each variant answers (``FAMILIES``:
    one-factor ablations, grid points, explicit variants and smp baselines are compared with
    the baseline, family by family); ``command`` is the command line that runs (and
    completes) the sweep."""
    name: str
    source: str
    description: str
    command: str
    baseline: str
    variants: tuple[str, ...]
    families: dict
    seeds: tuple[int, ...]
    runs: tuple[PlanEntry, ...]
    report: ReportSettings = ReportSettings()  # ``[report]``: headline, margin, rank test (flat in the file)
    datasets: tuple[str, ...] = ()  # the data sets' labels, in the sweep's order
    design: dict | None = None  # a factorial design (``design_dict``): axes, levels, points, generators

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(r.key for r in self.runs)

    def runs_of(self, variant: str) -> list[tuple[int, int | None]]:
        """(seed, fold) of every planned run of ``variant``."""
        return [(r.seed, r.fold) for r in self.runs if r.variant == variant]

    def for_dataset(self, label: str) -> "SweepPlan":
        """The plan of one data set of a suite."""
        return dataclasses.replace(self, datasets=(label,),
                                   runs=tuple(r for r in self.runs if r.dataset == label))


def design_dict(design) -> dict | None:
    """What sweep.json holds of a sweep's factorial design ((``Design``, point labels)):
    the axes and their levels, each point's label and coded levels, the generators of a
    fraction, its resolution and alias structure in words."""
    if design is None:
        return None
    plan, labels = design
    return {"axes": list(plan.axes), "levels": [list(v) for v in plan.levels],
            "points": [{"label": label, "coded": list(p)} for label, p in zip(labels, plan.points)],
            "generators": [list(g) for g in plan.generators], "resolution": plan.resolution,
            "aliases": plan.alias_text()}


def check_design(d: Any, variants: tuple[str, ...]) -> None:
    """A TypeError unless ``d`` is a design as ``design_dict`` writes it: the standard design
    of its axes and levels (full, or the fraction its generators name), every point coded
    -1/+1 and labelled with a variant of the sweep."""
    try:
        points = d["points"]
        standard = make_design({str(a): list(v) for a, v in zip(d["axes"], d["levels"], strict=True)},
                               len(d["generators"]))
        coded = tuple(tuple(p["coded"]) for p in points)
        labels = [p["label"] for p in points]
    except (TypeError, KeyError, ValueError) as e:
        raise TypeError(f"design: not a factorial design ({e})") from None
    if (coded != standard.points or [list(g) for g in d["generators"]] != [list(g) for g in standard.generators]
            or tuple(d["axes"]) != standard.axes or not all(label in variants for label in labels)):
        raise TypeError("design: its points are not the standard design of its axes, or name no variant of "
                        "the sweep")


def write_plan(results: Path, plan: SweepPlan) -> None:
    """sweep.json, the report settings' keys at its top level (as every version wrote them)."""
    d = dataclasses.asdict(plan)
    report = d.pop("report")
    write_json_atomic(Layout(results).plan, {**d, **report})


def read_plan(results: Path) -> SweepPlan | None:
    """The plan of a results folder, None where it has no ``sweep.json``."""
    path = Layout(results).plan
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(SweepPlan)} - {"report"} | set(REPORT_KEYS)
        if isinstance(d, dict):
            d.setdefault("datasets", [])    # plans written before suites
            d.setdefault("design", None)    # ... and before factorial designs
        if not isinstance(d, dict) or not set(d) <= fields or not set(d) >= fields - set(REPORT_KEYS):
            raise TypeError(f"expected the keys {', '.join(sorted(fields))}; `unet-ablate run` with "
                            f"the same arguments rewrites it without training again")
        # plans written before the metric was a choice, margins or declined rank tests: the defaults
        given = {k: d.pop(k) for k in REPORT_KEYS if k in d}  # null: the default (margin: the metric's)
        report = ReportSettings.from_table({k: v for k, v in given.items() if v is not None})
        runs = tuple(PlanEntry(**r) for r in d["runs"])
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        plan = SweepPlan(**{**values, "runs": runs, "report": report})
        labels = (plan.name, plan.command, plan.baseline, *plan.variants, *plan.families,
                  *plan.families.values(), *plan.datasets,
                  *(x for r in runs for x in (r.key, r.variant, r.dataset)))
        if not all(isinstance(v, str) for v in labels) or not all(
                is_int(r.seed) and (r.fold is None or is_int(r.fold)) for r in runs):
            raise TypeError("expected text labels and keys, integer seeds and folds")
        paths = (*plan.datasets, *(r.key for r in runs), *(r.dataset for r in runs if r.dataset))
        if bad := next((p for p in paths if not NAME.fullmatch(p)), None):
            raise TypeError(f"{bad!r} is not a plain name (letters, digits, '.', '_', '-'), so it names no file")
        if unknown := sorted(set(plan.families.values()) - set(FAMILIES)):
            raise TypeError(f"family {unknown[0]!r} (expected one of {', '.join(FAMILIES)})")
        if plan.design is not None:
            check_design(plan.design, plan.variants)
        return plan
    except (json.JSONDecodeError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(f"{path}: not a sweep plan written by `unet-ablate run` ({e})") from None
