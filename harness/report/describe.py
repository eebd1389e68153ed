"""What the records say about the experiment, as text: data, protocol, seeds, hardware,
software, and the metric / cost / statistics conventions.

Used by the table captions and the methods paragraph of the front page. Only the
records are read (as ``harness.store.records`` defines them); a value that differs between runs
lists every value (so nothing is hidden).
"""
from __future__ import annotations

import dataclasses
import json
from collections import Counter

from ..metrics import METRICS
from ..metrics import metric as metric_info
from ..spec.choices import selection_label
from ..spec.protocol import RESUME_ONLY, Protocol
from ..store.environment import env_mix
from ..store.records import mac_convention
from .labels import natural_key
from .stats import ALPHA, N_RESAMPLES
from .summary import MIN_SEEDS, has_metric, margin_of

# Protocol keys in the order of the protocol's fields.
PROTOCOL_ORDER = tuple(f.name for f in dataclasses.fields(Protocol))
PROTOCOL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Protocol)}

DICE_CONVENTION = ("Dice: per-image Dice averaged over images, empty reference + empty "
                   "prediction = 1, foreground classes averaged")


def families_text(summary) -> str:
    """"one-factor: 4 rows vs baseline, 98.75% intervals; pruned ds: 4 rows vs ds (mean),
    98.75% intervals" from the summary's declared families."""
    rows = summary[summary["reference"].notna()]
    parts = []
    for family, g in rows.groupby("family", sort=False):
        refs = " / ".join(dict.fromkeys(g["reference"]))
        m = int(g["family_size"].iloc[0])
        parts.append(f"{family}: {m} row{'s' * (m != 1)} vs {refs}, {100 * (1 - ALPHA / m):.4g}% intervals")
    return "; ".join(parts) or "none"


def headline_text(summary) -> str:
    """Which metric is the headline, what it measures, which way is better."""
    info = metric_info(summary["metric"].iloc[0])
    return (f"Headline metric (Δ, intervals, tests, marks): {info.label} "
            f"({'higher' if info.higher_is_better else 'lower'} is better): {info.text}")


def metrics_list(records: list[dict]) -> str:
    """One line per metric the records hold: what it measures and how empty masks score."""
    return "\n".join(f"- `{m.name}` ({m.label}): {m.text}" for m in METRICS.values()
                     if has_metric(records, m.name))


def stats_text(summary) -> str:
    """The statistics conventions of a table, as its caption states them."""
    label = metric_info(summary["metric"].iloc[0]).label
    margin = margin_of(summary)
    return (f"Δ: mean per-image {label} over seeds and test images minus the reference's (the "
            f"baseline; for a pruned form its own network's accurate form), on the images "
            f"both scored. Interval and test from one model (the paired differences, seeds x "
            f"images two-way ANOVA; k-fold: (seed, fold) units): the t interval at the "
            f"family's Bonferroni level; † different: Holm p < {ALPHA:g} within the family and "
            f"the interval not within the margin ±{margin:g}; equivalent: the interval within "
            f"it; MDE at 80% power; no test with fewer than {MIN_SEEDS} ok seeds per arm or "
            f"different seeds. Families: {families_text(summary)}")


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
    84/18/18 images (train/val/test))" from the records' ``data`` sections; with k-fold
    cross-validation "5-fold cross-validation of 120 images (...)"."""
    parts = []
    skip = ("split_ids", "split_sizes", "fold")  # per split or fold: described below
    found: dict = {}
    for d in (r["data"] for r in _ok_first(records)):
        found.setdefault(json.dumps({k: v for k, v in d.items() if k not in skip}, sort_keys=True), []).append(d)
    for ds in found.values():
        d = ds[0]
        details = [f"{d['num_classes']} classes incl. background",
                   f"{d['in_channels']} input channel(s)",
                   f"images {_image_size(d['image_size'])}"]
        if d.get("split") == "kfold":
            sizes = sorted({"/".join(str(x["split_sizes"][k]) for k in ("train", "val", "test")) for x in ds})
            details.append(f"{d['folds']}-fold cross-validation of {d['n_images']} images, folds fixed by "
                           f"the data seed, each image tested once per seed, validation carved from the "
                           f"training folds ({' or '.join(sizes)} images train/val/test per fold)")
        else:
            sizes = d["split_sizes"]
            details.append("split " + "/".join(str(sizes[k]) for k in ("train", "val", "test"))
                           + " images (train/val/test)")
        parts.append(f"{d['name']} ({', '.join(details)})")
    return "; ".join(parts)


def _distinct_dicts(dicts) -> list[dict]:
    seen = {}
    for d in dicts:
        if d:
            seen.setdefault(json.dumps(d, sort_keys=True), d)
    return [seen[k] for k in sorted(seen)]


def protocol_text(records: list[dict]) -> str:
    """The protocol every run trained under; with recipe variants (each variant one protocol),
    the baseline's and what each other variant changes in it ("`lr=0.0003`: lr 0.0003")."""
    texts = [settings_text(p, PROTOCOL_ORDER) for p in
             _distinct_dicts(r["spec"]["protocol"] for r in records)]
    if len(texts) <= 1:
        return texts[0] if texts else "not recorded"
    recipes = recipe_changes(records)
    if recipes is None:
        return "DIFFERS between runs: " + " | ".join(texts)
    base, changed = recipes
    return (f"{settings_text(base, PROTOCOL_ORDER)}; recipe variants change it: "
            + "; ".join(f"`{v}`: {settings_text(d, PROTOCOL_ORDER)}" for v, d in changed.items()))


def recipe_changes(records: list[dict]) -> tuple[dict, dict[str, dict]] | None:
    """(the baseline's protocol, {variant: the fields its protocol changes in it}) where each
    variant trained under one protocol and a baseline is flagged; else None."""
    by_variant: dict[str, list[dict]] = {}
    for r in records:
        p = recipe_of(r["spec"]["protocol"])
        by_variant.setdefault(r["variant"], [])
        if p not in by_variant[r["variant"]]:
            by_variant[r["variant"]].append(p)
    baseline = next((r["variant"] for r in records if r["is_baseline"]), None)
    if baseline is None or any(len(ps) != 1 for ps in by_variant.values()):
        return None
    base = by_variant[baseline][0]
    changed = {}
    for v in sorted(by_variant, key=natural_key):
        p = by_variant[v][0]
        if diff := {k: p[k] for k in p if p[k] != base[k]}:
            changed[v] = diff
    return (base, changed) if changed else None


def recipe_of(protocol: dict) -> dict:
    """What a run learns under, from its recorded protocol: every field (those a record
    leaves out at their default filled in), how it resumes left out."""
    return {k: v for k, v in {**PROTOCOL_DEFAULTS, **protocol}.items() if k not in RESUME_ONLY}


def protocol_sentence(records: list[dict]) -> str:
    """The methods' sentence on the protocol: one for every variant, or the baseline's and
    the recipe of each variant that changes it."""
    if recipe_changes(records) is None:
        return f"Every variant is trained under the same protocol: {protocol_text(records)}."
    return (f"Every variant is trained under the baseline's protocol but for the recipe it changes "
            f"(a recipe ablation: the same network under another optimizer, loss, rate, schedule, "
            f"augmentation or budget): {protocol_text(records)}.")


def selection_text(records: list[dict]) -> str:
    """"model selection uses the validation split (each run keeps the weights with the best
    validation Dice)" (the rule each record's weights were selected by; records that differ
    are counted)."""
    chosen = Counter(r["train"]["selected_on"] for r in records if r.get("train"))

    def count(n: int) -> str:
        return f" ({n} run{'s' * (n != 1)})" if len(chosen) > 1 else ""

    if set(chosen) <= {*METRICS}:  # on validation scores alone: the words every report had
        names = [metric_info(m).label + count(n) for m, n in sorted(chosen.items())]
        return (f"model selection uses the validation split (each run keeps the weights with the best "
                f"validation {' or '.join(names) or 'score'})")
    names = [selection_label(m) + count(n) for m, n in sorted(chosen.items())]
    return f"model selection keeps each run's weights with the {' or '.join(names)}"


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
    mixed = mixed_text(records)
    return (f"{sweep_name}. Data: {data_text(records)}. Protocol: {protocol_text(records)}. "
            f"Seeds: {seeds_text(records)} (mean ± std over ok seeds). "
            f"Device: {device_text(records)}. {mac_text(summary)}. {DICE_CONVENTION}. "
            f"{headline_text(summary)} "
            f"{stats_text(summary)}. {base}." + (f" {mixed}" if mixed else ""))


def mixed_text(records: list[dict]) -> str:
    """One sentence naming what differs between the environments of the records ("" when
    nothing does): results are reused across versions, devices and commits, never silently."""
    mix = env_mix([r["env"] for r in records])
    return f"Environments differ between runs: {mix}." if mix else ""


def methods(records: list[dict], summary, baseline: str | None) -> str:
    """The methods paragraph of the front page."""
    counts = {s: sum(r["status"] == s for r in records) for s in sorted({r["status"] for r in records})}
    runs = ", ".join(f"{n} {s}" for s, n in counts.items())
    base = (f"The baseline is `{baseline}`." if baseline
            else "No run is flagged as the baseline, so no differences are reported.")
    return (
        f"**Data.** {data_text(records)}. The split is fixed by the data seed, not the run seed; "
        f"{selection_text(records)} and the test "
        f"split is evaluated once.\n\n"
        f"**Protocol.** {protocol_sentence(records)} "
        f"Seeds: {seeds_text(records)}; {len(records)} runs ({runs}). {base}\n\n"
        f"**Hardware and software.** {device_text(records)}. {software_text(records)}. "
        f"Measurement settings: {measure_text(records)}.\n\n"
        f"**Metrics.** Dice and IoU are derived from per-image, per-class TP/FP/FN counts on "
        f"the test split. {DICE_CONVENTION}. Also reported: global Dice (counts pooled over "
        f"images), and the false-positive rate on images with an empty reference (only where "
        f"the test split has such images). Metrics that need whole images are computed once "
        f"per run on the whole predicted test image (after overlap-tile for crop-mode "
        f"models), on CPU, and stored per image, so any of them can be the headline "
        f"(`unet-ablate report --metric NAME`). {headline_text(summary)} Each metric the "
        f"records hold:\n\n{metrics_list(records)}\n\n"
        f"**Cost.** Parameters; {mac_text(summary)}; inference throughput (images/s, "
        f"median over seeds of each run's median of timed repeats after warm-up), latency at "
        f"batch 1 (ms, median over seeds), training throughput (images/s, median over seeds), "
        f"peak memory (MB, maximum over seeds, where measured).\n\n"
        + statistics_text(summary)
    )


def few_images_text(summary) -> str:
    """Where a comparison has 5 test images or fewer: the floor of p_images, in one clause
    (the seed-level test and interval, which give the verdicts, have no such floor)."""
    n = summary.loc[summary["n_pairs"] > 0, "n_pairs"]
    if n.empty or n.min() > 5:
        return ""
    k = int(n.min())
    return (f"; with {k} test image{'s' * (k != 1)}, p_images cannot fall below 2/2^{k} = {2 / 2 ** k:.3g}, so "
            f"the image-level test can never reject, while the seed-level test and interval, which give the "
            f"verdicts, can")


def statistics_text(summary) -> str:
    """The statistics paragraph of the methods: summaries, model, verdicts, families, runs."""
    margin = margin_of(summary)
    return (
        f"**Statistics.** Mean ± sample standard deviation (ddof = 1) over the ok seeds of each "
        f"variant. Every Δ has two sources of variation, the test images and the training "
        f"seeds; an interval or test over images with each image's Dice averaged over seeds "
        f"counts a lucky seed as an effect, so both enter here. "
        f"*One model*: the paired differences (seed k of the variant minus seed k of the "
        f"reference, per test image) are described by a two-way (seeds x images) random-effects "
        f"ANOVA, whose standard error counts seed noise and an image x variant interaction, with "
        f"seeds - 1 degrees of freedom (never less than the paired t test of the per-seed Δ); "
        f"with k-fold cross-validation the unit is the (seed, fold), so that a variant whose "
        f"advantage depends on the folds it trained on counts too (Satterthwaite's degrees of "
        f"freedom). From it come the test (a t test of Δ = 0; Holm within the family marks it), "
        f"the interval (the t interval at the family's Bonferroni level 1 - {ALPHA:g}/m, so an "
        f"interval that excludes 0 is always a marked row) and the minimum detectable effect "
        f"(MDE: the |Δ| this test finds with 80% power at that level, given the seeds, images "
        f"and variances observed). Simulated with no true difference (3, 5 and 8 seeds, seed "
        f"noise with and without an image x variant or a fold x variant interaction) its "
        f"false-positive rate stayed at or below {ALPHA:g} within simulation error. "
        f"*Verdicts*, at the margin ±{margin:g} declared before the runs (`[report] margin`, in "
        f"the headline's units): **different** (†) when the test rejects and the interval is "
        f"not within the margin; **equivalent** when the whole interval lies within ±{margin:g} "
        f"(two one-sided tests at the same level; \"equivalent (negligible)\" when it is also "
        f"significant: a real but negligible difference); **inconclusive** otherwise, with the "
        f"seeds that would settle it at the observed Δ and variance. No test with fewer than "
        f"{MIN_SEEDS} ok seeds in either arm or when the arms' seeds differ: the row says why. "
        f"*Secondary*: table.csv also holds a two-stage bootstrap interval ({N_RESAMPLES:,} "
        f"resamples of seeds within each arm, then of test images, BCa; boot_low, boot_high; "
        f"descriptive: with 3 seeds it under-covers) and an exact sign-flip test over test "
        f"images (p_images; exploratory){few_images_text(summary)}. Metrics beyond the headline are "
        f"exploratory: each is "
        f"corrected within its own family only, not across metrics. "
        f"*Families*, declared by the sweep before any run: {families_text(summary)}. Holm "
        f"within each family, counting every declared row (an untested row counts as not "
        f"rejected). table.csv holds the p-values, the standard error and degrees of freedom, "
        f"the MDE, the verdict and the per-seed Δ (delta_seed_<k>). "
        f"*Runs*: every row counts planned, ok, failed, diverged and missing runs (planned in "
        f"sweep.json without a record); failed and diverged runs are outcomes: their rate "
        f"is shown, and \"(fail = 0)\" is the headline's mean over seeds with a seed that failed "
        f"scoring 0, so that no variant wins by failing."
    )
