"""What the records say about the experiment, as text: data, protocol, seeds, hardware,
software, and the metric / cost / statistics conventions.

Used by the table captions and the methods paragraph of the front page. Only the
records are read (as ``harness.records`` defines them); a value that differs between runs
lists every value (so nothing is hidden).
"""
from __future__ import annotations

import dataclasses
import json

from ..cost import mac_convention
from ..protocol import Protocol
from .stats import ALPHA, N_RESAMPLES, natural_key

# Protocol keys in the order of the protocol's fields.
PROTOCOL_ORDER = tuple(f.name for f in dataclasses.fields(Protocol))

DICE_CONVENTION = ("Dice: per-image Dice averaged over images, empty reference + empty "
                   "prediction = 1, foreground classes averaged")
STATS_CONVENTION = (f"Δ vs baseline: per-image Dice (mean over ok seeds) minus the baseline's, "
                    f"averaged over test images, with a paired bootstrap 95% CI (BCa, "
                    f"{N_RESAMPLES} resamples of images); Wilcoxon signed-rank over test "
                    f"images, Holm-corrected across the table; † significant at {ALPHA:g} "
                    f"after correction")


def _value(v) -> str:
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) for x in v):
        return "x".join(f"{x:g}" for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return str(v)


def _image_size(v: dict) -> str:
    """A data section's {"min_hw": [h, w], "max_hw": [h, w]} as text."""
    lo, hi = _value(v["min_hw"]), _value(v["max_hw"])
    return lo if lo == hi else f"{lo} to {hi}"


def _distinct(values) -> list[str]:
    """Sorted distinct non-empty text values."""
    return sorted({_value(v) for v in values if v not in (None, "", [], {})})


def _join(values, empty: str = "unknown") -> str:
    return " / ".join(values) if values else empty


def settings_text(d: dict | None, order=()) -> str:
    """"steps 200, batch 4, lr 0.001" from a (possibly nested) settings dict."""
    if not d:
        return ""
    keys = [k for k in order if k in d] + sorted(k for k in d if k not in order)
    return ", ".join(f"{k} {_value(d[k])}" for k in keys if d[k] is not None)


def _ok_first(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: r["status"] != "ok")


def data_text(records: list[dict]) -> str:
    """"membranes (2 classes incl. background, 1 input channel(s), images 128x128, split
    84/18/18 images (train/val/test))" from the records' ``data`` sections."""
    parts = []
    skip = ("split_ids",)  # long id lists: not part of the description
    for d in {json.dumps({k: v for k, v in d.items() if k not in skip}, sort_keys=True): d
              for d in (r["data"] for r in _ok_first(records))}.values():
        sizes = d["split_sizes"]
        details = [f"{d['num_classes']} classes incl. background",
                   f"{d['in_channels']} input channel(s)",
                   f"images {_image_size(d['image_size'])}",
                   "split " + "/".join(str(sizes[k]) for k in ("train", "val", "test"))
                   + " images (train/val/test)"]
        parts.append(f"{d['name']} ({', '.join(details)})")
    return "; ".join(parts)


def _distinct_dicts(dicts) -> list[dict]:
    seen = {}
    for d in dicts:
        if d:
            seen.setdefault(json.dumps(d, sort_keys=True), d)
    return [seen[k] for k in sorted(seen)]


def protocol_text(records: list[dict]) -> str:
    texts = [settings_text(p, PROTOCOL_ORDER) for p in
             _distinct_dicts(r["spec"]["protocol"] for r in records)]
    if len(texts) > 1:
        return "DIFFERS between runs: " + " | ".join(texts)
    return texts[0] if texts else "not recorded"


def measure_text(records: list[dict]) -> str:
    return " | ".join(settings_text(m) for m in
                      _distinct_dicts(r["spec"]["measure"] for r in records)) or "not recorded"


def seeds_text(records: list[dict]) -> str:
    return ", ".join(str(s) for s in sorted({r["seed"] for r in records}, key=natural_key))


def device_text(records: list[dict]) -> str:
    """"NVIDIA H100 80GB HBM3 (cuda, 16 threads, float32, channels_last)"."""
    keys = ("device_name", "device", "threads", "dtype", "memory_format")
    envs = [r["env"] for r in records]
    out = []
    for env in _distinct_dicts({k: e.get(k) for k in keys} for e in envs if e):
        details = [str(env[k]) for k in ("device",) if env.get(k)]
        if env.get("threads") is not None:
            details.append(f"{env['threads']} threads")
        details += [str(env[k]) for k in ("dtype", "memory_format") if env.get(k)]
        out.append(f"{env.get('device_name') or 'unknown device'}"
                   + (f" ({', '.join(details)})" if details else ""))
    return " / ".join(out) or "unknown device"


def software_text(records: list[dict]) -> str:
    names = (("python", "Python"), ("torch", "PyTorch"), ("torchvision", "torchvision"),
             ("smp", "segmentation-models-pytorch"), ("numpy", "NumPy"))
    envs = [r["env"] for r in records]
    parts = [f"{label} {_join(_distinct(e.get(k) for e in envs))}" for k, label in names
             if _distinct(e.get(k) for e in envs)]
    platform = _distinct(e.get("platform") for e in envs)
    commit = _distinct(e.get("git_commit") for e in envs)
    text = ", ".join(parts) or "versions not recorded"
    if platform:
        text += f" on {_join(platform)}"
    if commit:
        text += f"; git commit {_join(commit)}"
    return text


def macs_size_text(summary) -> str:
    sizes = sorted({s for s in summary["macs_size"].dropna()})
    return " / ".join(sizes) if sizes else "HxW"


def mac_text(summary) -> str:
    """The MAC convention, for the image size of the table."""
    return mac_convention(f"one {macs_size_text(summary)} image")


def caption(records: list[dict], summary, sweep_name: str, baseline: str | None) -> str:
    """The one-line caption of every table."""
    base = f"Baseline: {baseline}" if baseline else "No baseline in the records (no Δ)"
    return (f"{sweep_name}. Data: {data_text(records)}. Protocol: {protocol_text(records)}. "
            f"Seeds: {seeds_text(records)} (mean ± std over ok seeds). "
            f"Device: {device_text(records)}. {mac_text(summary)}. {DICE_CONVENTION}. "
            f"{STATS_CONVENTION}. {base}.")


def methods(records: list[dict], summary, baseline: str | None) -> str:
    """The methods paragraph of the front page."""
    counts = {s: sum(r["status"] == s for r in records) for s in sorted({r["status"] for r in records})}
    runs = ", ".join(f"{n} {s}" for s, n in counts.items())
    base = (f"The baseline is `{baseline}`." if baseline
            else "No run is flagged as the baseline, so no differences are reported.")
    return (
        f"**Data.** {data_text(records)}. The split is fixed by the data seed, not the run seed; "
        f"model selection uses the validation split and the test split is evaluated once.\n\n"
        f"**Protocol.** Every variant is trained under the same protocol: {protocol_text(records)}. "
        f"Seeds: {seeds_text(records)}; {len(records)} runs ({runs}). {base}\n\n"
        f"**Hardware and software.** {device_text(records)}. {software_text(records)}. "
        f"Measurement settings: {measure_text(records)}.\n\n"
        f"**Metrics.** Dice and IoU are derived from per-image, per-class TP/FP/FN counts on "
        f"the test split. {DICE_CONVENTION}. Also reported: global Dice (counts pooled over "
        f"images), and the false-positive rate on images with an empty reference (only where "
        f"the test split has such images).\n\n"
        f"**Cost.** Parameters; {mac_text(summary)}; inference throughput (images/s, "
        f"median over seeds of each run's median of timed repeats after warm-up), latency at "
        f"batch 1 (ms, median over seeds), training throughput (images/s, median over seeds), "
        f"peak memory (MB, maximum over seeds, where measured).\n\n"
        f"**Statistics.** Mean ± sample standard deviation (ddof = 1) over the ok seeds of each "
        f"variant. {STATS_CONVENTION}. The interval and the test take the test images as the "
        f"sampling unit, each image's Dice averaged over the ok seeds: seed-to-seed variation "
        f"shows in the ± std columns, not in the interval. Failed and diverged runs are "
        f"counted in every row and listed below; they do not enter the statistics."
    )
