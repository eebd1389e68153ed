"""How the report names and orders things: seeds in natural order, the baseline, the
variants' order, each row's declared family, and a row's run counts in words."""
from __future__ import annotations

import numbers
from collections import Counter

import numpy as np

BAD = ("failed", "diverged")  # the statuses of runs that ended without a result


def natural_key(x) -> tuple:
    """Numbers before text, numbers by value (seeds 2 < 10), text as text."""
    if isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)):
        return (0, float(x), "")
    return (1, 0.0, str(x))


def baseline_variant(records: list[dict]) -> str | None:
    """The variant flagged ``is_baseline``, or None."""
    flagged = sorted({r["variant"] for r in records if r["is_baseline"]})
    return flagged[0] if flagged else None


def variant_order(records: list[dict], baseline: str | None, order=None) -> list[str]:
    """Variants in the sweep file's order when given (planned variants without a record
    included), others appended, sorted; else the baseline first and the rest sorted."""
    present = sorted({r["variant"] for r in records})
    listed = list(dict.fromkeys(order or []))
    if not listed and baseline in present:
        listed = [baseline]
    return listed + [v for v in present if v not in listed]


def family_of(variant: str, form: str, factor, families: dict) -> str:
    """The declared family of a row: "pruned <variant>" for a pruned form, else the plan's
    family of the variant (without a plan: from the record's factor)."""
    if form != "mean":
        return f"pruned {variant}"
    if variant in families:
        return families[variant]
    return "baseline" if factor == "baseline" else ("one-factor" if isinstance(factor, str) else "explicit")


def status_text(ok: int, planned: int, counts: Counter) -> str:
    """"2/3 ok, 1 failed, 1 missing"."""
    rest = [f"{counts[s]} {s}" for s in (*BAD, "missing") if counts.get(s)]
    return ", ".join([f"{ok}/{planned} ok", *rest])


def _seeds_text(seeds) -> str:
    return ", ".join(str(s) for s in seeds)
