"""Reading configuration tables (sweep files, spec dicts): one rule for every value.

Every check raises ``ValueError("<key>: expected <what>, got <value>")``, naming the key
as the user wrote it (``protocol.steps``, ``data.seed``). Integers are integers: ``3``,
never ``3.0``, ``"3"`` or ``true``; numbers are ints or floats, never strings or booleans.
"""
from __future__ import annotations

import dataclasses
import os
import re
import struct
from typing import Any, Iterable, Mapping

from variants.spec import is_int  # the same integer rule as the architecture specs


def check_keys(table: Any, known: Iterable[str], where: str) -> None:
    """A mapping whose keys are all in ``known``; ``where`` prefixes the key in errors."""
    known = sorted(known)
    prefix = f"{where}." if where else ""
    if not isinstance(table, Mapping):
        raise ValueError(f"{where or 'table'}: expected a table of keys ({', '.join(known)}), "
                         f"got {table!r}")
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ValueError(f"{prefix}{unknown[0]}: unknown key (expected one of {', '.join(known)})")


def from_table(cls, table: Any, where: str):
    """A frozen dataclass from a table; lists become tuples; unknown keys are errors."""
    check_keys(table, [f.name for f in dataclasses.fields(cls)], where)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in table.items()})


def first_repeat(items: Iterable) -> Any:
    """The first item that occurs a second time in ``items``, or None."""
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def _fail(key: str, expected: str, value: Any):
    raise ValueError(f"{key}: expected {expected}, got {value!r}")


def integer(key: str, value: Any, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        _fail(key, "a positive integer" if minimum == 1 else f"an integer >= {minimum}", value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


FLOAT32_MAX = 3.4028234663852886e38  # numbers reach the model and optimizer as float32


def number(key: str, value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    """An int or float >= ``minimum`` (> with ``strict``) that float32 holds (not inf, not
    1e300, and with ``strict``, not so small that it rounds to the minimum)."""
    fits = _is_number(value) and abs(value) <= FLOAT32_MAX
    if fits and strict:
        fits = float(struct.unpack("f", struct.pack("f", value))[0]) > minimum
    if not fits or not (value > minimum if strict else value >= minimum):
        _fail(key, f"a number {'>' if strict else '>='} {minimum:g} that fits float32", value)
    return value


def fraction(key: str, value: Any) -> float:
    """A number strictly between 0 and 1."""
    if not _is_number(value) or not 0 < value < 1:
        _fail(key, "a fraction strictly between 0 and 1", value)
    return float(value)


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(key, "true or false", value)
    return value


def text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        _fail(key, "a text string", value)
    return value


def table(key: str, value: Any, what: str) -> Mapping:
    """A table (TOML ``{...}`` or ``[key]``); ``what`` says what its entries are."""
    if not isinstance(value, Mapping):
        _fail(key, f"a table of {what}", value)
    return value


def choice(key: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        _fail(key, " | ".join(allowed), value)
    return value


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a plain name, never a path
NAME_BAD = re.compile(r"[^A-Za-z0-9._-]")              # what a plain name cannot hold


def plain_name(key: str, value: Any, names: str) -> str:
    """``value`` when it is a plain name (it names ``names``: folders), else a ValueError."""
    if not (isinstance(value, str) and NAME.fullmatch(value)):
        raise ValueError(f"{key}: expected a plain name (letters, digits, '.', '_', '-'; it names "
                         f"{names}), got {value!r}")
    return value


def default_label(name: str, root: str | None) -> str:
    """A data set's name in reports when the sweep gives none: the built-in set's name, else
    the folder's name (as a plain name: it names a report folder)."""
    if root is None:
        return name
    base = os.path.basename(os.path.normpath(root))
    return NAME_BAD.sub("_", base).lstrip("._-") or name
