"""Planning a sweep: which runs it holds (``PlannedRun``: the run spec, how the sweep names
it, the data of its fold), what their keys say about the data (``data_identity``), and the
checks made before anything is written (image sizes, ``measure.size`` on ``meta``).

Nothing here trains; ``scheduling.one_run`` runs one planned run, ``scheduling.dispatch``
schedules them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import variants

from ..data import check_min_size, load_dataset
from ..metrics import class_of
from ..spec.protocol import RunSpec
from ..spec.sweep import Sweep
from ..store import records
from ..training.cost import count_macs


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its spec, how the sweep names it (``labels``), the data of its
    fold (a ``Dataset`` view), and, for a run still to do, the modification time of the
    record that was there when the sweep was listed (``seen``; None: no record)."""
    spec: RunSpec
    labels: records.Labels
    data: object
    seen: int | None = None
    tensorboard: bool = False  # write TensorBoard event files (``[log] tensorboard``, --tensorboard)

    @property
    def key(self) -> str:
        return self.spec.key


def model_classes(num_classes: int) -> int:
    """One logit for binary data, one per class otherwise."""
    return 1 if num_classes <= 2 else num_classes


def arch_for_data(spec, data):
    return spec.replace(in_channels=data.in_channels, classes=model_classes(data.num_classes))


def data_identity(data) -> dict:
    """What a run key says about its data: the data spec, and for folder data the hash of
    what was read (``Dataset.content_key``), so that a run on changed data is a new run."""
    d = data.spec.to_dict()
    return d if data.spec.synthetic else {**d, "content": data.content_key}


def _candidates(sweep: Sweep) -> list[tuple]:
    """(variant, its protocol, what its record says of tuning) of every variant, and with
    ``[tune]`` of every point of the grid for each variant."""
    if sweep.tune is None:
        return [(v, v.protocol(sweep.protocol), None) for v in sweep.variants]
    return [(v, dataclasses.replace(v.protocol(sweep.protocol), **point), sweep.tune.record(point))
            for v in sweep.variants for point in sweep.tune.points]


def plan(sweep: Sweep, loaded: dict) -> list[PlannedRun]:
    """Every data set, variant, seed and fold of a sweep, planned; ``loaded``: data set
    label -> its loaded ``Dataset``. Two variants with one spec are a ValueError."""
    out = []
    for named in sweep.datasets:
        data = loaded[named.label]
        identity = data_identity(data)
        for v, protocol, tuning in _candidates(sweep):
            arch = arch_for_data(v.spec, data)
            labels = records.Labels(sweep.name, v.label, v.factor, v.is_baseline, named.label, tuning)
            for seed in sweep.seeds:
                for view in data.fold_views():
                    rs = RunSpec(arch=arch.to_dict(), data=identity, protocol=protocol,
                                 measure=sweep.measure, seed=seed, fold=view.fold)
                    out.append(PlannedRun(rs, labels, view, tensorboard=sweep.tensorboard))
    seen: dict[str, str] = {}
    for run in out:
        if seen.setdefault(run.key, run.labels.variant) != run.labels.variant:
            raise ValueError(f"variants {seen[run.key]!r} and {run.labels.variant!r} have the same spec "
                             f"({variants.parse(run.spec.arch).name}) and protocol; each variant must differ")
    return out


def check_image_sizes(sweep: Sweep, data) -> None:
    """Every image must be large enough for every pad-mode model (2**depth pixels; crop-mode
    models mirror-pad, smp baselines pad, so any size works for them)."""
    need = 1
    for v in sweep.variants:
        spec = arch_for_data(v.spec, data)
        if isinstance(spec, variants.ArchSpec) and spec.skip == "pad":
            need = max(need, variants.min_pad_size(spec))
    check_min_size(data, need, need)


def check_input_size(sweep: Sweep, todo: list[PlannedRun]) -> None:
    """Before anything trains: the model of every run still to do must take the input of
    ``measure.size``, tried on ``meta`` (no compute) once per distinct network, so a rerun
    of a recorded sweep tries none."""
    h, w = sweep.measure.size
    tried = set()
    for run in todo:
        spec = variants.parse(run.spec.arch)
        if spec in tried:
            continue
        tried.add(spec)
        try:
            count_macs(spec, variants.input_geometry(spec, h)[0], variants.input_geometry(spec, w)[0])
        except ValueError as e:
            on = f" on data set {run.labels.dataset!r}" if sweep.is_suite else ""
            raise ValueError(f"measure.size: does not fit variant {run.labels.variant!r}{on}: {e}") from None


def load_all(sweep: Sweep) -> dict:
    """Every data set of the sweep, loaded, its images checked against every variant and the
    metrics it names against its classes: a one-line DataError or ValueError before anything
    is written."""
    loaded = {}
    for named in sweep.datasets:
        loaded[named.label] = load_dataset(named.spec)
        check_image_sizes(sweep, loaded[named.label])
        check_metric_classes(sweep, loaded[named.label], named.label)
    return loaded


def check_metric_classes(sweep: Sweep, data, label: str) -> None:
    """A per-class metric (``dice_c<k>``, ``hd95_c<k>``, ...) as the headline or a variant's
    selection must name a class the data set scores: counts give both sides of binary data
    (classes 0 and 1) and the foreground classes of multi-class data; boundaries the
    foreground classes only."""
    foreground = list(range(1, data.num_classes)) if data.num_classes > 2 else [1]
    named = [("report.metric", sweep.report.metric)]
    named += [(f"variants.{v.label}: protocol.select" if v.recipe else "protocol.select",
               v.protocol(sweep.protocol).select) for v in sweep.variants]
    for key, name in dict.fromkeys(named):
        if (per_class := class_of(name)) is None:
            continue
        base, k = per_class
        valid = [0, 1] if base in ("dice", "iou") and data.num_classes <= 2 else foreground
        if k not in valid:
            raise ValueError(f"{key}: {name!r}: data set {label!r} has no class {k} for {base} "
                             f"(expected {' or '.join(f'{base}_c{c}' for c in valid)})")


_LOADED: dict = {}  # in a worker process or cluster job: the data sets loaded so far, by spec


def planned_run(sweep: Sweep, key: str, dataset: str) -> PlannedRun:
    """Run ``key`` of ``sweep``, planned, loading only its data set ``dataset`` (once per
    process)."""
    named = next((n for n in sweep.datasets if n.label == dataset), None)
    if named is not None:
        if named.spec not in _LOADED:
            _LOADED[named.spec] = load_dataset(named.spec)
        one = dataclasses.replace(sweep, datasets=(named,))
        for run in plan(one, {named.label: _LOADED[named.spec]}):
            if run.key == key:
                return run
    raise ValueError(f"run {key} is no run of sweep {sweep.name!r} now (its data changed since it was "
                     f"submitted?); run the sweep again")
