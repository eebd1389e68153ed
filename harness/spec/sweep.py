"""Sweep files (TOML): the data set, the protocol, the measurement, the seeds, the
baseline and the variants, expanded into run specs.

```toml
name = "cpu"
seeds = 3                      # or an explicit list [0, 1, 2]
workers = 2                    # runs at once on this machine (default 1; `--workers` overrides)
[data]      # harness.data.DataSpec fields (split = "kfold", folds = 5: cross-validation)
label = "membranes"            # optional: the data set's name in the report
# or a suite: several [[data]] tables, each with a label; every variant and seed runs on each
[protocol]  # harness.spec.protocol.Protocol fields
[measure]   # harness.spec.protocol.Measure fields
[variants]
baseline = "unet-w16"          # a spec name, preset or table; labelled "baseline"
one_factor = { act = ["relu6"], up = ["bilinear"] }   # one axis at a time from the baseline
grid = { act = ["relu", "relu6"], up = ["transpose", "bilinear"] }  # every combination
factorial = { act = ["relu", "relu6"], up = ["transpose", "bilinear"], norm = ["bn", "nobn"] }
fraction = "1/2"               # a standard 2^(k-1) fraction of it (or resolution = 4); default: full
[variants.explicit]            # label = spec name, preset or table (smp baselines too)
"unetpp-ds" = "unetpp-ds-w16"
[report]
metric = "dice"                # the headline of the report (harness.metrics.METRICS)
margin = 0.01                  # |Δ| that does not matter, in the headline's units (default: the metric's)
rank_test = true               # a suite's Friedman test across data sets (false: data sets too alike)
[log]
tensorboard = true             # event files per run under OUT/tensorboard (as `run --tensorboard`)
[launcher]  # Launcher fields: how `run --launcher slurm|local` submits its jobs
partition = "gpu"
gpus_per_task = 1
timeout_min = 120
additional_parameters = { qos = "normal" }   # any other sbatch option
```
One-factor variants are labelled ``axis=value``; grid points and factorial design points
``a=x,b=y`` (a design point that is the baseline or a one-factor variant is that run, under
its label). A factorial design (``harness.spec.design``: two levels per axis, the first the
baseline's) is reported as main effects and interactions (``report.effects``). A data set
without a label is named after the built-in set or its folder; labels are plain names
(they name report folders), one per data set.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..config import (
    NAME_BAD,
    boolean,
    check_keys,
    first_repeat,
    from_table,
    integer,
    is_int,
    number,
    plain_name,
    table,
    text,
)
from ..data import DataSpec
from .expand import Variant, expand, parse_spec
from .protocol import Measure, Protocol
from .settings import ReportSettings
from .tuning import Tune, parse_tune

MAX_SEEDS = 10_000  # seeds a sweep holds at most (a count beyond is a typo, not a plan)
SWEEP_KEYS = ("name", "description", "seeds", "workers", "data", "protocol", "measure", "variants", "report",
              "launcher", "log", "tune")


log = logging.getLogger("unet_ablate")

@dataclass(frozen=True)
class NamedData:
    """One data set of a sweep: its label in the report and its spec."""
    label: str
    spec: DataSpec


@dataclass(frozen=True)
class Launcher:
    """How ``unet-ablate run --launcher slurm|local`` submits a sweep through submitit: one
    job per run that has no record, as a job array of at most ``array_parallelism`` jobs at
    once, each with ``cpus_per_task`` CPUs (its runs use that many threads; default: the
    sweep's ``measure.threads``), ``gpus_per_task`` GPUs (default: 1 where
    ``measure.device`` is ``cuda``, else none), ``mem_gb`` of memory and
    ``timeout_min`` minutes (a job stopped at its time limit or preempted is requeued and
    resumes from its in-run checkpoint). ``partition``, ``setup`` (shell lines run before
    the job, e.g. ``module load cuda``) and ``additional_parameters`` (any other sbatch
    option, ``{ qos = "high", account = "lab" }``) are for SLURM only."""

    partition: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    timeout_min: int = 120
    array_parallelism: int = 64
    setup: tuple[str, ...] = ()
    additional_parameters: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.partition is not None:
            text("launcher.partition", self.partition)
        if self.gpus_per_task is not None:
            integer("launcher.gpus_per_task", self.gpus_per_task, 0)
        for k in ("timeout_min", "array_parallelism") + (("cpus_per_task",) if self.cpus_per_task is not None else ()):
            integer(f"launcher.{k}", getattr(self, k), 1)
        if self.mem_gb is not None:
            number("launcher.mem_gb", self.mem_gb, 0, strict=True)
        if not (isinstance(self.setup, tuple) and all(isinstance(line, str) for line in self.setup)):
            raise ValueError(f"launcher.setup: expected a list of shell lines, got {self.setup!r}")
        for k, v in table("launcher.additional_parameters", self.additional_parameters,
                          "sbatch options (name = value)").items():
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):  # a boolean is neither
                raise ValueError(f"launcher.additional_parameters.{k}: expected a text or a number, got {v!r}")

    @classmethod
    def from_dict(cls, d) -> "Launcher":
        return from_table(cls, table("launcher", d, "launcher settings"), "launcher")


@dataclass(frozen=True)
class Sweep:
    name: str
    datasets: tuple[NamedData, ...]
    protocol: Protocol
    measure: Measure
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    description: str = ""
    source: str = ""
    report: ReportSettings = ReportSettings()  # the headline, its margin, the rank test ([report])
    tune: Tune | None = None  # each variant at its best of a grid of protocol fields ([tune])
    tensorboard: bool = False  # TensorBoard event files per run ([log] tensorboard; --tensorboard)
    design: tuple | None = None  # a factorial design: (harness.spec.design.Design, the variant label of each point)
    launcher: Launcher = Launcher()  # how `--launcher` submits it (the [launcher] table)
    workers: int = 1  # runs at once on one machine unless `--workers` says otherwise

    @property
    def baseline(self) -> Variant:
        return next(v for v in self.variants if v.is_baseline)

    @property
    def is_suite(self) -> bool:
        return len(self.datasets) > 1


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("harness.sweeps").iterdir() if p.name.endswith(".toml"))


def _read(source: str) -> tuple[dict, str]:
    path = Path(source)
    if source.endswith(".toml") or (path.exists() and not (path.is_dir() and source in preset_names())):
        if not path.is_file():  # a folder named like a preset does not hide the preset
            raise ValueError(f"{source}: " + ("a folder, not a sweep file" if path.is_dir() else "no such sweep file")
                             + f" (expected a preset, {', '.join(preset_names())}, or a TOML file)")
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{where}: not UTF-8 text (byte {e.start}); a sweep file is TOML, UTF-8") from None
    elif source in preset_names():
        text = resources.files("harness.sweeps").joinpath(f"{source}.toml").read_text()
        where = f"preset {source}"
    else:
        raise ValueError(f"{source!r} is neither a sweep preset ({', '.join(preset_names())}) nor a TOML file")
    try:
        return tomllib.loads(text), where
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{where}: invalid TOML: {e}") from None


def _datasets(value) -> tuple[NamedData, ...]:
    """[data] (one table) or [[data]] (a suite: a list of tables, each with a label)."""
    tables = value if isinstance(value, list) else [table("data", value, "DataSpec fields")]
    if not tables:
        raise ValueError("data: expected at least one data set ([data] or [[data]] tables)")
    out = []
    for i, t in enumerate(tables):
        key = "data" if len(tables) == 1 and not isinstance(value, list) else f"data[{i}]"
        t = dict(table(key, t, "DataSpec fields and a label"))
        label = t.pop("label", None)
        try:
            spec = DataSpec.from_dict(t)
        except ValueError as e:
            raise ValueError(str(e).replace("data.", f"{key}.", 1)) from None
        label = plain_name(f"{key}.label", spec.default_label if label is None else label,
                           "the data set's report folder")
        out.append(NamedData(label, spec))
    if (twice := first_repeat(n.label for n in out)) is not None:
        raise ValueError(f"data: the label {twice!r} is given twice; each data set once, with its own label")
    places = [_place(n.spec) for n in out]
    if (twice := first_repeat(places)) is not None:
        a, b = (n for n, place in zip(out, places) if place == twice)
        same = f" ({a.spec.root!r} and {b.spec.root!r} are one folder)" if a.spec.root != b.spec.root else ""
        raise ValueError(f"data: the data set {a.label!r} is given twice{same}; each data set once, "
                         f"with its own label")
    return tuple(out)


def _place(spec: DataSpec) -> DataSpec:
    """What a data spec reads: a folder by its real path, so that one folder under two
    spellings (``data/p8``, ``x/../data/p8``, a link) is one data set."""
    return dataclasses.replace(spec, root=os.path.realpath(spec.root)) if spec.root else spec


def load_sweep(source: str) -> Sweep:
    """A sweep from a preset name or a TOML path; errors name the file and the key."""
    d, where = _read(source)
    try:
        check_keys(d, SWEEP_KEYS, "")
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    for key in ("data", "variants"):
        if key not in d:
            raise ValueError(f"{where}: [{key}] is missing")
    seeds = d.get("seeds", 3)
    if is_int(seeds) and 1 <= seeds <= MAX_SEEDS:
        seeds = list(range(seeds))
    if not (isinstance(seeds, list) and 0 < len(seeds) <= MAX_SEEDS and all(is_int(s) and s >= 0 for s in seeds)):
        raise ValueError(f"{where}: seeds: expected a count from 1 to {MAX_SEEDS:,} or a list of as many integers "
                         f">= 0, got {str(seeds)[:40]}")
    if (twice := first_repeat(seeds)) is not None:
        raise ValueError(f"{where}: seeds: {twice} is given twice (each seed is one run; a repeat "
                         f"would be counted twice)")
    try:
        datasets = _datasets(d["data"])
        report = ReportSettings.from_table(d.get("report", {}))
        logs = table("log", d.get("log", {}), "keys (tensorboard)")
        check_keys(logs, ("tensorboard",), "log")
        tensorboard = boolean("log.tensorboard", logs.get("tensorboard", False))
        # checkpoints are selected on the headline unless [protocol] select says otherwise
        protocol = Protocol.from_dict({"select": report.select,
                                       **table("protocol", d.get("protocol", {}), "protocol fields")})
        measure = Measure.from_dict(d.get("measure", {}))
        description = text("description", d.get("description", ""))
        launcher = Launcher.from_dict(d.get("launcher", {}))
        workers = integer("workers", d.get("workers", 1), 1)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {e}") from None
    name = plain_name(f"{where}: name", d.get("name", NAME_BAD.sub("_", Path(source).stem)),
                      "the folders results/<name> and reports/<name>")
    expanded, design = expand(d["variants"], protocol, where)
    try:
        tune = parse_tune(d["tune"], protocol, expanded) if "tune" in d else None
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return Sweep(tune=tune, name=name, datasets=datasets, protocol=protocol, measure=measure, seeds=tuple(seeds),
                 variants=expanded, design=design, description=description, source=where,
                 report=report, tensorboard=tensorboard,
                 launcher=launcher, workers=workers)


def _budget(p, steps: int):
    """``p`` (a Protocol, or a recipe's fields) at the command line's ``--steps``: ``eval_every``
    and ``warmup`` within it."""
    return dataclasses.replace(p, steps=steps, eval_every=min(p.eval_every, steps), warmup=min(p.warmup, steps // 10))


def _budget_recipes(variants_: tuple, base: Protocol, steps: int) -> tuple:
    """The variants under ``--steps``: it holds for every variant, so a recipe's own steps give
    way (its eval_every and warmup clamped as the baseline's); a recipe variant left with
    nothing of its own is the baseline's run, and is left out, saying so."""
    out = []
    for v in variants_:
        mine = _budget(v.protocol(base), steps)
        recipe = tuple((k, getattr(mine, k)) for k, _ in v.recipe if getattr(mine, k) != getattr(base, k))
        if v.recipe and not recipe and not v.is_baseline and v.spec == variants_[0].spec:
            log.warning("--steps %d: variant %r is the baseline's run now (its recipe changed only the "
                        "budget); left out", steps, v.label)
            continue
        out.append(dataclasses.replace(v, recipe=recipe))
    return tuple(out)


def override(sweep: Sweep, data_dir: str | None = None, layout: str | None = None,
             variant_labels: list[str] | None = None, seeds: int | None = None,
             steps: int | None = None, device: str | None = None, folds: int | None = None,
             launcher: dict | None = None) -> Sweep:
    """A new sweep: the loaded one with the command line's overrides (``data_dir`` replaces
    every data set with that folder; ``folds`` makes every data set k-fold; ``launcher``:
    [launcher] fields, None values left out)."""
    changes: dict = {}
    if launcher and (given := {k: v for k, v in launcher.items() if v is not None}):
        changes["launcher"] = dataclasses.replace(sweep.launcher, **given)
    datasets = sweep.datasets
    if data_dir is not None:
        first = datasets[0].spec
        spec = DataSpec(name="folder", root=str(Path(data_dir).resolve()), layout=layout or "auto",
                        seed=first.seed, split=first.split, folds=first.folds)
        datasets = (NamedData(spec.default_label, spec),)
    elif layout is not None:
        raise ValueError("--layout needs --data DIR")
    if folds is not None:
        try:
            datasets = tuple(NamedData(n.label, dataclasses.replace(n.spec, split="kfold", folds=folds))
                             for n in datasets)
        except ValueError as e:
            raise ValueError(f"--folds: {e}") from None
    if datasets != sweep.datasets:
        changes["datasets"] = datasets
    if variant_labels:
        if (twice := first_repeat(variant_labels)) is not None:
            raise ValueError(f"--variants: {twice} is given twice (a variant runs once per seed)")
        by_label = {v.label: v for v in sweep.variants}
        chosen = [sweep.baseline]
        for label in variant_labels:
            if label in by_label:
                if not by_label[label].is_baseline:
                    chosen.append(by_label[label])
            else:
                chosen.append(Variant(label, parse_spec(label, "--variants"), None))
        changes["variants"] = tuple(chosen)
        if sweep.design and not set(sweep.design[1]) <= {v.label for v in chosen}:
            changes["design"] = None  # a part of the design is no design: its points are plain variants
    if seeds is not None:
        if not 1 <= seeds <= MAX_SEEDS:
            raise ValueError(f"--seeds: expected a count from 1 to {MAX_SEEDS:,}, got {seeds}")
        changes["seeds"] = tuple(range(seeds))
    if steps is not None:
        changes["protocol"] = _budget(sweep.protocol, steps)
        changes["variants"] = _budget_recipes(changes.get("variants", sweep.variants), changes["protocol"], steps)
        if sweep.design and not set(sweep.design[1]) <= {v.label for v in changes["variants"]}:
            changes["design"] = None
    if device is not None:
        changes["measure"] = dataclasses.replace(sweep.measure, device=device)
    return dataclasses.replace(sweep, **changes)
