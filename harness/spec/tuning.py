"""``[tune]``: each variant at its own best setting of some protocol fields, chosen on the
validation split, so that a verdict does not only say whose recipe the protocol was.

```toml
[tune]
"protocol.lr" = [1e-3, 3e-3, 1e-2]   # any field a recipe axis may change; several make a grid
by = "variant"                       # one choice per variant (over its seeds), or "variant-seed"
```

Every variant (and seed) trains at every point of the grid; each run is a candidate whose
record names its point (``tuning``). The report keeps, per variant (or variant and seed), the
point with the best mean validation score on the metric the runs were selected on, from the
records' validation scores alone; only those runs' test scores enter tables and verdicts.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from ..config import choice, table
from .expand import FIXED, PREFIX, RECIPE_FIELDS, field_value
from .protocol import Protocol

BY = ("variant", "variant-seed")


@dataclass(frozen=True)
class Tune:
    grid: tuple[tuple[str, tuple], ...]  # (protocol field, its values), in the file's order
    by: str = "variant"

    @property
    def points(self) -> list[dict[str, Any]]:
        """Every point of the grid: {field: value}, the first field slowest."""
        fields = [f for f, _ in self.grid]
        return [dict(zip(fields, combo)) for combo in itertools.product(*(v for _, v in self.grid))]

    def record(self, point: dict[str, Any]) -> dict[str, Any]:
        """What a candidate's record says of its tuning: its point and the rule."""
        return {"values": dict(point), "by": self.by}

    def text(self) -> str:
        """"lr 0.001 | 0.003 | 0.01" for every field of the grid."""
        return "; ".join(f"{f} {' | '.join(map(str, values))}" for f, values in self.grid)


def parse_tune(value: Any, protocol: Protocol, variants) -> Tune | None:
    """The ``[tune]`` table of a sweep (None when absent); errors name the key."""
    d = dict(table("tune", value, '"protocol.<field>" = [values] and by'))
    by = choice("tune.by", d.pop("by", "variant"), BY)
    grid = []
    for key, values in d.items():
        name = key.removeprefix(PREFIX)
        if not key.startswith(PREFIX) or name not in RECIPE_FIELDS:
            why = f": {FIXED[name]}" if name in FIXED else ""
            raise ValueError(f"tune.{key}: expected {PREFIX}<field> of [protocol] "
                             f"({', '.join(RECIPE_FIELDS)}) = [values], or by{why}")
        if not (isinstance(values, list) and len(values) >= 2):
            raise ValueError(f"tune.{key}: expected a list of at least two values, got {values!r}")
        values = [field_value(name, v) for v in values]
        try:
            parsed = tuple(getattr(dataclasses.replace(protocol, **{name: v}), name) for v in values)
        except (ValueError, TypeError) as e:
            raise ValueError(f"tune.{key}: {e}") from None
        if len(set(map(repr, parsed))) < len(parsed):
            raise ValueError(f"tune.{key}: a value is given twice, got {values!r}")
        grid.append((name, parsed))
    for v in variants:
        if clash := sorted({f for f, _ in grid} & {f for f, _ in v.recipe}):
            raise ValueError(f"tune.{PREFIX}{clash[0]}: variant {v.label!r} sets it itself; tune it or vary it, "
                             f"not both")
    return Tune(tuple(grid), by) if grid else None
