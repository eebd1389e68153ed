"""A sweep's ``[variants]`` table, expanded: the baseline, one-factor changes, grid points, a
two-level factorial design and explicit variants, over the network's axes (``act``, ``up``,
``norm``, ...) and the recipe's (``"protocol.<field>"``: optimizer, lr, loss, schedule,
augment, steps, ...) alike.

A variant is a network spec and a recipe: the protocol fields it changes from the sweep's
``[protocol]`` (none for a network variant). A recipe variant runs the baseline's network
unless it changes that too, and is labelled like a network variant without the prefix
(``optimizer=rmsprop``, ``norm=nobn,lr=0.0003``). Every level is compared after parsing: a
change that leaves the baseline as it was is no variant, and a factorial axis whose two
levels are one value is an error.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import variants

from ..config import check_keys, first_repeat, table
from .design import design as make_design
from .design import fraction_for
from .protocol import Protocol
from .recipes import RECIPES
from .recipes import recipe as named_recipe

PREFIX = "protocol."
FIXED = {"checkpoint_every": "it changes how a run resumes, never what it learns"}
"""Protocol fields that cannot differ between the variants of a sweep, and why."""
RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(Protocol) if f.name not in FIXED)
FLOATS = {f.name for f in dataclasses.fields(Protocol) if isinstance(f.default, float)}


def field_value(name: str, value):
    """A level of protocol field ``name``: an int level of a float field is that float (1 and
    1.0 are one value, one run key)."""
    return float(value) if name in FLOATS and type(value) is int else value
EXPLICIT_KEYS = ("arch", "recipe", "protocol")  # an explicit variant given as network + recipe


@dataclass(frozen=True)
class Variant:
    label: str
    spec: object          # variants.ArchSpec | variants.SmpSpec, channels not yet set
    factor: str | None    # the axis a one-factor variant changes; "baseline" for the baseline
    is_baseline: bool = False
    family: str = "explicit"  # the question it answers (sweep_plan.FAMILIES), declared up front
    recipe: tuple = ()    # ((protocol field, value), ...) it changes from the sweep's [protocol]

    def protocol(self, base: Protocol) -> Protocol:
        """The protocol this variant trains under: the sweep's, with its recipe."""
        return dataclasses.replace(base, **dict(self.recipe)) if self.recipe else base


def recipes_text(width: int) -> str:
    """What ``unet-ablate list`` says of recipes: the recipe axes and the named recipes."""
    lines = [f"Recipe axes (beside the network's, in any kind of variant): {PREFIX}<field> for "
             f"{', '.join(RECIPE_FIELDS)}.",
             "\nNamed recipes, from the seeds' code (`{ arch = ..., recipe = NAME }` in [variants.explicit]):"]
    for name, r in RECIPES.items():
        lines += [f"{name:<{width}}  " + ", ".join(f"{k} {v}" for k, v in r.fields.items()),
                  f"{'':<{width}}  {r.source}; {r.mapped}"]
    return "\n".join(lines)


def parse_spec(value, where: str):
    try:
        return variants.parse(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {e}") from None


def axis_name(axis: str) -> str:
    """How a variant, a label and a factorial term name an axis: the field, without the prefix."""
    return axis.removeprefix(PREFIX)


class Expander:
    """Points (network spec, recipe) of one sweep, derived from its baseline and protocol;
    every error names the sweep file and the key."""

    def __init__(self, base, protocol: Protocol, where: str):
        self.base, self.protocol, self.where = base, protocol, where
        self.fields = {f.name for f in dataclasses.fields(variants.ArchSpec)}

    def fail(self, key: str, what: str):
        raise ValueError(f"{self.where}: variants.{key}: {what}")

    def network(self, changes: dict, key: str):
        if not changes:
            return self.base
        if not isinstance(self.base, variants.ArchSpec):
            self.fail(key, f"needs a family baseline, not {self.base.name}")
        for axis in changes:
            if axis not in self.fields:
                self.fail(key if key.endswith(f".{axis}") else f"{key}.{axis}",
                          f"not an axis (expected one of {', '.join(sorted(self.fields))}, "
                          f"or {PREFIX}<field> of [protocol])")
        try:
            return self.base.replace(**changes)
        except (ValueError, TypeError) as e:
            self.fail(key, str(e))

    def recipe(self, changes: dict, key: str) -> tuple:
        """((field, value), ...) of ``changes`` that differ from the sweep's protocol, sorted."""
        for name in changes:
            if name in FIXED:
                self.fail(key, f"{PREFIX}{name} cannot differ between variants: {FIXED[name]}")
            if name not in RECIPE_FIELDS:
                self.fail(key, f"{PREFIX}{name}: not a protocol field (expected one of {', '.join(RECIPE_FIELDS)})")
        changes = {k: field_value(k, v) for k, v in changes.items()}
        try:
            p = dataclasses.replace(self.protocol, **changes)
        except (ValueError, TypeError) as e:
            self.fail(key, str(e))
        return tuple(sorted((k, getattr(p, k)) for k in changes if getattr(p, k) != getattr(self.protocol, k)))

    def point(self, changes: dict, key: str) -> tuple:
        """(network spec, recipe) of ``changes``: axes of the network and ``protocol.<field>``."""
        net = {a: v for a, v in changes.items() if not a.startswith(PREFIX)}
        rec = {axis_name(a): v for a, v in changes.items() if a.startswith(PREFIX)}
        return self.network(net, key), self.recipe(rec, key)

    def label(self, point: tuple, axes) -> str:
        """``a=x,b=y`` over the axes where ``point`` leaves the baseline (recipe fields unprefixed)."""
        spec, rec = point
        changed = dict(rec)
        parts = []
        for a in axes:
            if a.startswith(PREFIX):
                if axis_name(a) in changed:
                    parts.append(f"{axis_name(a)}={changed[axis_name(a)]}")
            elif getattr(self.base, a) != getattr(spec, a):
                parts.append(f"{a}={getattr(spec, a)}")
        return ",".join(parts)

    def base_value(self, axis: str):
        """The baseline's level of ``axis``: its network's, or the sweep protocol's field."""
        return getattr(self.protocol, axis_name(axis)) if axis.startswith(PREFIX) else getattr(self.base, axis)

    def is_base(self, point: tuple) -> bool:
        return point == (self.base, ())


def expand(d: dict, protocol: Protocol, where: str) -> tuple[tuple[Variant, ...], tuple | None]:
    """The variants of a ``[variants]`` table and its factorial design (or None)."""
    try:
        check_keys(d, ("baseline", "one_factor", "grid", "factorial", "fraction", "resolution", "explicit"),
                   "variants")
        one_factor = table("variants.one_factor", d.get("one_factor", {}), "axis = [values]")
        grid = table("variants.grid", d.get("grid", {}), "axis = [values]")
        explicit = table("variants.explicit", d.get("explicit", {}), "label = spec name or table")
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if "baseline" not in d:
        raise ValueError(f"{where}: variants.baseline: missing (the spec every variant is compared with)")
    ex = Expander(parse_spec(d["baseline"], f"{where}: variants.baseline"), protocol, where)
    out = [Variant("baseline", ex.base, "baseline", True, "baseline")]
    for axis, values in one_factor.items():
        for v in values if isinstance(values, list) else [values]:
            point = ex.point({axis: v}, f"one_factor.{axis}")
            if not ex.is_base(point):
                out.append(Variant(ex.label(point, [axis]), point[0], axis_name(axis), family="one-factor",
                                   recipe=point[1]))
    for combo in itertools.product(*[v if isinstance(v, list) else [v] for v in grid.values()]):
        point = ex.point(dict(zip(grid, combo)), "grid")
        if not ex.is_base(point):
            out.append(Variant(ex.label(point, grid), point[0], None, family="grid", recipe=point[1]))
    design = _factorial(d, ex, out)
    for label, value in explicit.items():
        out.append(_explicit(ex, label, value))
    if (twice := first_repeat(v.label for v in out)) is not None:
        raise ValueError(f"{where}: variant {twice!r} is given twice")
    return tuple(out), design


def _explicit(ex: Expander, label: str, value) -> Variant:
    """An explicit variant: a spec name, preset or table, or a table of ``arch`` (default: the
    baseline's network), a named ``recipe`` and ``protocol`` fields (over the recipe's)."""
    key = f"explicit.{label}"
    if not (isinstance(value, dict) and set(value) & set(EXPLICIT_KEYS)):
        return Variant(label, parse_spec(value, f"{ex.where}: variants.{key}"), None)
    try:
        check_keys(value, EXPLICIT_KEYS, f"variants.{key}")
        fields = named_recipe(value["recipe"], f"variants.{key}") if "recipe" in value else {}
        fields.update(table(f"variants.{key}.protocol", value.get("protocol", {}), "protocol fields"))
    except ValueError as e:
        raise ValueError(f"{ex.where}: {e}") from None
    spec = parse_spec(value["arch"], f"{ex.where}: variants.{key}.arch") if "arch" in value else ex.base
    return Variant(label, spec, None, recipe=ex.recipe(fields, key))


def _factorial(d: dict, ex: Expander, out: list):
    """(Design, the label of each point) of ``[variants] factorial``, or None: its points join
    ``out`` as "factorial" variants, but a point that is already there (the baseline, a
    one-factor variant) is that run. Its terms are named by ``axis_name``."""
    axes = d.get("factorial")
    if axes is None:
        if any(k in d for k in ("fraction", "resolution")):
            raise ValueError(f"{ex.where}: variants.fraction/resolution need variants.factorial")
        return None
    try:
        axes = dict(table("variants.factorial", axes, "axis = [first level (the baseline's), second level]"))
        plan = make_design(axes, fraction_for(len(axes), d.get("fraction"), d.get("resolution")))
    except ValueError as e:
        raise ValueError(f"{ex.where}: {e}") from None
    for axis, levels in axes.items():
        first, second = (ex.point({axis: level}, f"factorial.{axis}") for level in levels)
        if not ex.is_base(first):
            ex.fail(f"factorial.{axis}", f"the first level must be the baseline's ({ex.base_value(axis)!r}), "
                                         f"got {levels[0]!r}")
        if second == first:
            ex.fail(f"factorial.{axis}", f"{levels[1]!r} is {levels[0]!r} (one level given twice: two "
                                         f"spellings of one value)")
    labels = []
    for coded in plan.points:
        changes = {a: plan.levels[i][(c + 1) // 2] for i, (a, c) in enumerate(zip(plan.axes, coded))}
        point = ex.point(changes, "factorial (at " + ", ".join(f"{a}={v}" for a, v in changes.items()) + ")")
        same = next((v for v in out if (v.spec, v.recipe) == point), None)
        if same is None:
            same = Variant(ex.label(point, changes), point[0], None, family="factorial", recipe=point[1])
            out.append(same)
        labels.append(same.label)
    return dataclasses.replace(plan, axes=tuple(axis_name(a) for a in plan.axes)), tuple(labels)
