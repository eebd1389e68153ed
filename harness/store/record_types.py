"""The run record as types: ``RunRecord`` and its sections (TypedDicts: what
``harness.store.records``'s docstring sketches, key by key), and the one validator they drive
(``problem``), which ``records.check_record`` runs on every record it reads.

A key that is not ``NotRequired`` must be there (NotRequired: records written by older
versions lack it); ``Any``: values vary (numbers that may be null or NaN), so only the key is
checked. Keys a table holds beyond its type's are left alone (a form's metrics hold one mean
per metric the run has).
"""
# No ``from __future__ import annotations`` here: on Python 3.11 a TypedDict whose annotations
# are strings counts its NotRequired keys as required (``__required_keys__``), and the
# validator reads those at run time.
import functools
import types
from collections.abc import Callable
from typing import Any, Literal, NotRequired, TypedDict, Union, get_args, get_origin, get_type_hints, is_typeddict

# --------------------------------------------------------------------------- the record

Status = Literal["ok", "failed", "diverged"]


class SpecSection(TypedDict):
    """The RunSpec (``RunSpec.to_dict``)."""
    arch: dict[str, Any]      # a variants spec dict
    data: dict[str, Any]      # a DataSpec dict
    protocol: dict[str, Any]
    measure: dict[str, Any]
    seed: int
    fold: NotRequired[int]    # k-fold runs only


class DataSection(TypedDict):
    """The data a run used (``Dataset.summary``)."""
    name: str
    key: str
    layout: str
    root: str | None
    n_images: int
    num_classes: int
    class_values: list[Any]
    in_channels: int
    split: NotRequired[Literal["holdout", "kfold"]]  # records written before k-fold lack these three
    fold: NotRequired[int | None]
    folds: NotRequired[int | None]
    split_sizes: dict[str, Any]
    split_ids: dict[str, Any]
    image_size: dict[str, Any]


class TrainSection(TypedDict):
    """Training (``FitResult``); records written before the TRAIN_ADDED keys lack them, and
    ``check_record`` fills them in (``_read_train``)."""
    steps: int
    best_step: int | None
    best_val_dice: Any
    train_img_s: Any
    peak_mem_mb: Any
    history: list[dict[str, Any]]
    compile_s: NotRequired[Any]
    train_tflops: NotRequired[Any]
    mfu: NotRequired[Any]
    selected_on: NotRequired[str]
    best_val_score: NotRequired[Any]


class Counts(TypedDict):
    """Per-image, per-class confusion counts: ``values[image][class]`` is ``fields`` (tp, fp, fn, tn)."""
    classes: list[Any]
    fields: list[Any]
    images: list[Any]
    values: list[Any]


class Metrics(TypedDict):
    """Run-level means of a form (and a key per metric of ``harness.metrics`` the run has)."""
    dice: Any
    iou: Any
    dice_global: Any
    iou_global: Any
    fpr_empty: Any
    n_empty: Any
    n_images: Any


class ImageMetrics(TypedDict):
    """The whole-map metrics of every test image (``evaluate.image_scores``): metric -> [per image]."""
    thin_class: Any
    nsd_tolerance: Any
    values: dict[str, Any]
    time_s: Any


class Cost(TypedDict):
    """What a form costs (``training.cost``, ``training.measure``)."""
    params: Any
    macs: Any
    macs_size: list[Any]
    input_size: list[Any]
    infer_img_s: Any
    infer_img_s_iqr: Any
    infer_batch: Any
    latency_ms: Any
    latency_ms_iqr: Any
    peak_mem_mb: Any


class Predictions(TypedDict):
    """The first predicted class maps: ``data[i]`` is base64(zlib(uint8 map)) of ``shapes[i]``."""
    ids: list[Any]
    shapes: list[Any]
    data: list[Any]


class FormEntry(TypedDict):
    """One inference form: "mean" or "L1".."L4" (a pruned deep-supervision head)."""
    form: str
    counts: Counts
    metrics: Metrics
    image_metrics: NotRequired[ImageMetrics]  # schema 3 (``check_record`` requires it there)
    cost: Cost
    predictions: Predictions


# ``environment.environment``; names with a dash need this form. Records written before the
# package versions and ``cuda`` lack them.
EnvSection = TypedDict("EnvSection", {
    "device": str, "device_name": Any, "threads": Any, "cpu_count": Any, "dtype": Any, "memory_format": Any,
    "python": Any, "torch": Any, "torchvision": Any, "smp": Any, "numpy": Any, "platform": Any, "git_commit": Any,
    "scipy": NotRequired[Any], "scikit-image": NotRequired[Any], "monai": NotRequired[Any],
    "pandas": NotRequired[Any], "thop": NotRequired[Any], "tifffile": NotRequired[Any],
    "pillow": NotRequired[Any], "submitit": NotRequired[Any], "cuda": NotRequired[dict[str, Any] | None],
})


class RunRecord(TypedDict):
    """A run record (schema 2 or 3). ``check_record`` fills ``dataset`` and ``fold`` where a
    record lacks them."""
    schema: Literal[2, 3]
    key: str
    sweep: str
    variant: str
    factor: str | None
    is_baseline: bool
    seed: int
    tuning: NotRequired[dict[str, Any] | None]  # a [tune] candidate's point and rule (records before: none)
    dataset: NotRequired[str]       # records written before suites and k-fold lack these two
    fold: NotRequired[int | None]
    spec: SpecSection
    status: Status
    error: str | None
    traceback: str | None
    cause: NotRequired[str | None]  # ... and before failures had a cause (records.CAUSES)
    started: str
    finished: str | None
    time_s: float | int | None
    data: DataSection
    train: TrainSection | None
    forms: list[FormEntry]
    env: EnvSection


# --------------------------------------------------------------------------- the validator
# Each type above becomes two checks, made once (``functools.cache``): ``_level``, a value
# against the type at its own level, and ``_inner``, the tables inside a value that passed it.
# A check takes (value, where) and returns what is wrong, as one line naming where
# ("forms[0].counts.values is missing"), or None.

Check = Callable[[Any, str], str | None]


def _ok(value: Any, where: str) -> None:
    return None


@functools.cache
def _level(tp: Any) -> Check:
    """The check of a value against ``tp`` at its own level: a TypedDict, a dict; a
    ``list[...]`` or ``dict[...]``, that container (never its items: lists of numbers are long);
    a Literal, one of its values (``==``); a union, one of its members; a class, an instance
    (a bool is not an int here)."""
    if tp is Any:
        return _ok
    if is_typeddict(tp):
        return lambda value, where: None if isinstance(value, dict) else f"{where} is not a table"
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        members = [_level(m) for m in args]
        named = [m for m in args if m is not type(None)]
        # a single type or null: what that type says (``train is not a table``)
        other = _level(named[0]) if len(named) == 1 else None

        def union(value: Any, where: str) -> str | None:
            if any(check(value, where) is None for check in members):
                return None
            return other(value, where) if other else f"{where} is {value!r}"
        return union
    if origin is Literal:
        kinds = tuple({type(a) for a in args})

        def literal(value: Any, where: str) -> str | None:
            if value in args:
                return None
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                return f"{where} is {value!r}"
            return f"{where} {value!r} (expected {', '.join(map(str, args))})"
        return literal
    cls = origin or tp

    def instance(value: Any, where: str) -> str | None:
        if isinstance(value, cls) and (cls is bool or not isinstance(value, bool)):
            return None
        return f"{where} is {value!r}"
    return instance


@functools.cache
def _inner(tp: Any) -> Check | None:
    """The check of the tables inside a value that passed ``_level(tp)``: a TypedDict's keys
    (every key of its own level first, then the tables inside them), the member a union's
    value is, each table of a list of TypedDicts (a record's few forms); None: none inside."""
    if is_typeddict(tp):
        required = tp.__required_keys__
        fields = [(key, _level(t), _inner(t), key in required) for key, t in get_type_hints(tp).items()]
        tables = [(key, inner) for key, _, inner, _ in fields if inner is not None]

        def table(value: dict, where: str) -> str | None:
            prefix = f"{where}." if where else ""
            for key, level, _, needed in fields:
                if key in value:
                    if problem := level(value[key], prefix + key):
                        return problem
                elif needed:
                    return f"{prefix}{key} is missing"
            return next((p for key, inner in tables if key in value and (p := inner(value[key], prefix + key))),
                        None)
        return table
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        pairs = [(_level(m), inner) for m in args if (inner := _inner(m)) is not None]
        if not pairs:
            return None

        def union(value: Any, where: str) -> str | None:
            return next((inner(value, where) for level, inner in pairs if level(value, where) is None), None)
        return union
    if origin is list and is_typeddict(args[0]):
        item = _problem_of(args[0])

        def items(value: list, where: str) -> str | None:
            return next((p for i, v in enumerate(value) if (p := item(v, f"{where}[{i}]"))), None)
        return items
    return None


def _problem_of(tp: Any) -> Check:
    """The whole check of a value against ``tp``: its level, then the tables inside."""
    level, inner = _level(tp), _inner(tp)
    return level if inner is None else lambda value, where: level(value, where) or inner(value, where)


def problem(value: Any, tp: Any, where: str = "") -> str | None:
    """What is wrong with ``value`` as a ``tp`` (one of the types above), None when nothing."""
    return _problem_of(tp)(value, where)
