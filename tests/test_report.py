"""The report on fabricated records: statistics checked against hand computations, tables,
figures (valid PDF with embedded TrueType fonts, 300-dpi PNG), determinism, and the CLI."""
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from PIL import Image

import variants
from harness.cli import main
from harness.data import Dataset, DataSpec
from harness.metrics import per_image_dice
from harness.report import build_report
from harness.report.stats import holm, pareto_front, seed_model, seed_t_p
from harness.report.summary import summary_table
from harness.report.tables import markdown
from harness.spec.protocol import Measure, Protocol, RunSpec
from harness.spec.settings import ReportSettings
from harness.store import records, sweep_plan
from harness.store.environment import environment
from harness.store.layout import Layout
from harness.store.records import load_records
from harness.store.samples import read_samples, write_samples
from harness.training.train import FitResult

REPO = Path(__file__).resolve().parents[1]
IDS = [f"img{i:02d}" for i in range(12)]  # test images; the last has an empty reference
PIXELS = 32 * 32
ORDER = ["baseline", "better", "same", "flaky", "broken", "ds"]  # as in sweep.json
FIGURES = ["accuracy_cost", "ablation", "curves", "qualitative", "deep_supervision"]
DATA = DataSpec("membranes", n_images=80, size=16)
PROTOCOL = Protocol(steps=200, batch_size=4, patch=64, optimizer="adamw", lr=0.001, loss="bce+dice")
MEASURE = Measure(size=(64, 64), repeats=5)
ENV = environment(torch.device("cpu"), 2, "float32", False)


def data_section() -> dict:
    """The data section the runner writes: a Dataset's summary, with IDS as its test split."""
    ids = IDS + [f"trn{i:02d}" for i in range(56)] + [f"val{i:02d}" for i in range(12)]
    dataset = Dataset(images=[np.zeros((1, 16, 16), np.float32)] * 80, masks=[np.zeros((16, 16), np.int64)] * 80,
                 ids=ids, paths=[None] * 80, num_classes=2, class_values=[0, 1], in_channels=1,
                 splits={"test": list(range(12)), "train": list(range(12, 68)), "val": list(range(68, 80))},
                 spec=DATA, layout="synthetic")
    return dataset.summary()


DATA_SECTION = data_section()


# --------------------------------------------------------------------------- fabricated results
# Counts are made up; the records around them are built by harness.store.records, as the runner does.

def baseline_counts(seed: int) -> np.ndarray:
    """(12 images, 1 class, [tp, fp, fn, tn]); image 11: empty reference, seed FPs."""
    rows = []
    for i in range(11):
        tp, fp, fn = 50 + 5 * i + seed, 10 + i % 3 + 2 * seed, 8 + i % 4 + seed
        rows.append([[tp, fp, fn, PIXELS - tp - fp - fn]])
    rows.append([[0, seed, 0, PIXELS - seed]])
    return np.array(rows, dtype=np.int64)


def better_counts(seed: int) -> np.ndarray:
    c = baseline_counts(seed)
    c[:11, 0, 1] -= 5        # five fewer false positives on every foreground image, every seed
    c[..., 3] = PIXELS - c[..., :3].sum(-1)
    return c


def flaky_counts(seed: int) -> np.ndarray:
    c = baseline_counts(seed)
    c[:11:2, 0, 2] += 3      # misses a little more on even images, fewer on odd ones
    c[1:11:2, 0, 2] -= 2
    c[11, 0, 1] = 1 - seed   # and predicts on the empty image with seed 0 only
    c[..., 3] = PIXELS - c[..., :3].sum(-1)
    return c


def ds_counts(seed: int, k: int) -> np.ndarray:
    """Form L4 (and the mean of heads) equals the baseline; shallower forms are worse."""
    c = baseline_counts(seed)
    c[:11, 0, 2] += 4 - k
    c[11, 0, 1] += 4 - k
    c[..., 3] = PIXELS - c[..., :3].sum(-1)
    return c


def form(name: str, counts: np.ndarray, seed: int, macs: float, params: int = 1_000_000):
    """What ``records.add_form`` takes for one inference form."""
    rng = np.random.default_rng([seed, len(name)])
    maps = [(rng.random((16, 16)) < 0.3).astype(np.uint8) for _ in range(4)]
    cost = {"params": params, "macs": int(macs), "macs_size": [64, 64], "input_size": [64, 64],
            "infer_img_s": 400.0 + 10 * seed, "infer_img_s_iqr": 4.0, "infer_batch": 8,
            "latency_ms": 3.0 + seed, "latency_ms_iqr": 0.1, "peak_mem_mb": None}
    return name, counts, cost, maps


def fabricated_image_metrics(counts: np.ndarray) -> dict:
    """Whole-map metrics that follow the counts' Dice: VI and HD95 fall as it rises."""
    d = per_image_dice(counts)
    values = {"rand_f": 0.9 * d, "vi": 2 * (1 - d), "cldice": d ** 2, "hd95": 10 * (1 - d), "nsd": d,
              "hd95_c1": 10 * (1 - d), "nsd_c1": d}
    return {"thin_class": 0, "nsd_tolerance": 1.0, "time_s": 0.01,
            "values": {k: v.tolist() for k, v in values.items()}}


def record(variant: str, seed: int, forms: list, *, arch: str = "baseline", factor=None,
           status: str = "ok", error=None, traceback=None) -> dict:
    rs = RunSpec(arch=variants.parse(arch).to_dict(), data=DATA.to_dict(), protocol=PROTOCOL,
                 measure=MEASURE, seed=seed)
    labels = records.Labels("fab", variant, "baseline" if variant == "baseline" else factor,
                            variant == "baseline")
    rec = records.new_record(rs, labels, DATA_SECTION, ENV)
    ok = status == "ok"
    history = [{"step": s, "loss": 1.0 / s, "val_dice": 0.5 + s / 500 + 0.01 * seed,
                "lr": 0.001, "elapsed_s": s / 10} for s in (50, 100, 150, 200)] if ok else []
    records.add_training(rec, FitResult(steps=200 if ok else 12, best_step=200, best_val_dice=0.9,
                                        train_img_s=100.0 + seed, history=history))
    for name, counts, cost, maps in forms:
        records.add_form(rec, name, counts, [1], IDS, cost, maps, keep=4,
                         image_metrics=fabricated_image_metrics(counts))
    records.end(rec, 0.0, 60.0, status, error, traceback)
    return rec


def make_results(root: Path, samples: bool = True) -> Path:
    recs = []
    for s in range(3):
        recs.append(record("baseline", s, [form("mean", baseline_counts(s), s, 2e9)]))
        recs.append(record("better", s, [form("mean", better_counts(s), s, 3e9)],
                           arch="unet-bilinear", factor="up"))
        recs.append(record("same", s, [form("mean", baseline_counts(s), s, 1e9)],
                           arch="unet-relu6", factor="act"))
        recs.append(record("ds", s, [form("mean", ds_counts(s, 4), s, 5e9)] + [
            form(f"L{k}", ds_counts(s, k), s, k * 1e9) for k in (1, 2, 3, 4)],
            arch="unetpp-ds-w8"))
    for s in range(2):
        recs.append(record("flaky", s, [form("mean", flaky_counts(s), s, 2e9)],
                           arch="unet-nobn", factor="norm"))
    recs.append(record("flaky", 2, [], arch="unet-nobn", factor="norm", status="failed",
                       error="RuntimeError: out of memory (fabricated)",
                       traceback="Traceback (most recent call last):\nRuntimeError: out of memory (fabricated)"))
    recs.append(record("broken", 0, [], arch="unet-crop", factor="skip", status="failed",
                       error="ValueError: input too small (fabricated)"))
    recs.append(record("broken", 1, [], arch="unet-crop", factor="skip", status="diverged",
                       error="loss is NaN at step 12 (fabricated)"))
    for r in recs:
        records.write_record(root, r)
    families = {"baseline": "baseline", "better": "one-factor", "same": "one-factor",
                "flaky": "one-factor", "broken": "one-factor", "ds": "explicit"}
    planned = [sweep_plan.PlanEntry(r["key"], r["variant"], r["seed"]) for r in recs]
    sweep_plan.write_plan(root, sweep_plan.SweepPlan(
        name="fab", source="fabricated", description="", command="unet-ablate run fab.toml --out results/fab",
        baseline="baseline", variants=tuple(ORDER), families=families, seeds=(0, 1, 2),
        runs=tuple(planned)))
    if samples:
        images = [np.full((1, 16, 16), i / 12, np.float32) for i in range(4)]
        masks = [np.eye(16, dtype=np.int64) for _ in range(4)]
        write_samples(root, DATA.key, IDS[:4], images, masks)
    return root


def hand_dice(counts: np.ndarray) -> np.ndarray:
    """Per-image Dice, written out: 2TP / (2TP + FP + FN), 1 when both are empty."""
    out = []
    for (tp, fp, fn, _), in counts:
        den = 2 * tp + fp + fn
        out.append(1.0 if den == 0 else 2 * tp / den)
    return np.array(out)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = make_results(tmp_path_factory.mktemp("results"))
    out = build_report(root, tmp_path_factory.mktemp("report") / "r1")
    return root, out


def row(table: pd.DataFrame, variant: str, form_name: str = "mean") -> pd.Series:
    r = table[(table["variant"] == variant) & (table["form"] == form_name)]
    assert len(r) == 1
    return r.iloc[0]


# --------------------------------------------------------------------------- statistics

def test_pareto_front_hand_example():
    cost = [1, 2, 3, 4, np.nan]
    dice = [0.5, 0.7, 0.6, 0.8, 0.9]
    assert pareto_front(cost, dice).tolist() == [True, True, False, True, False]
    assert pareto_front(cost, dice, minimize_cost=False).tolist() == [False, False, False, True, False]


def seed_matrix(counts_of, seeds=range(3)) -> np.ndarray:
    return np.stack([hand_dice(counts_of(s)) for s in seeds])


@pytest.fixture(scope="module")
def hand_table(built) -> pd.DataFrame:
    """The summary of the fabricated records, checked below against hand computation."""
    root, _ = built
    return summary_table(load_records(root), "baseline", ORDER, sweep_plan.read_plan(root))


def test_the_baseline_row_against_hand_computation(hand_table):
    base = seed_matrix(baseline_counts)
    b = row(hand_table, "baseline")
    assert b["dice_mean"] == pytest.approx(statistics.mean(base.mean(axis=1)))
    assert b["dice_std"] == pytest.approx(statistics.stdev(base.mean(axis=1)))
    assert b["status"] == "3/3 ok" and b["is_baseline"] and np.isnan(b["p"]) and b["family"] == "baseline"
    assert b["fpr_empty_mean"] == pytest.approx(2 / 3)  # seeds 1 and 2 predict on the empty image


def test_delta_and_its_per_seed_values_against_hand_computation(hand_table):
    base, better = seed_matrix(baseline_counts), seed_matrix(better_counts)
    r = row(hand_table, "better")
    assert r["delta"] == pytest.approx(better.mean() - base.mean())
    assert [r[f"delta_seed_{s}"] for s in range(3)] == pytest.approx((better - base).mean(axis=1))


def test_the_tests_of_a_row_against_hand_computation(hand_table):
    diff = seed_matrix(better_counts) - seed_matrix(baseline_counts)
    r = row(hand_table, "better")
    assert r["p_images"] == pytest.approx(2 / 2 ** 11)  # 11 equal-sign differences, one tie
    assert r["p_seeds"] == pytest.approx(seed_t_p(diff))  # seed k with seed k, 12 images
    assert r["p"] == r["p_seeds"]  # the mark rests on the seed-level model; p_images is exploratory
    assert r["n_pairs"] == 12 and r["n_seeds"] == 3 and r["n_dropped"] == 0


def test_the_interval_and_mde_of_a_row_are_the_seed_models_at_the_bonferroni_level(hand_table):
    model = seed_model(seed_matrix(better_counts) - seed_matrix(baseline_counts))
    r = row(hand_table, "better")
    half = scipy.stats.t.ppf(1 - 0.05 / 4 / 2, 2) * model.se  # the t interval at the Bonferroni level, df 2
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((model.mean - half, model.mean + half))
    assert r["se"] == pytest.approx(model.se) and r["df"] == 2
    assert r["ci_low"] <= r["delta"] <= r["ci_high"] and r["ci_low"] > 0
    assert r["ci_level"] == pytest.approx(1 - 0.05 / 4) and r["ci_method"] == "t"
    mde = (scipy.stats.t.ppf(1 - 0.05 / 8, 2) + scipy.stats.t.ppf(0.8, 2)) * model.se
    assert r["mde"] == pytest.approx(mde)


def test_the_bootstrap_interval_stands_beside_the_models(hand_table):
    r = row(hand_table, "better")
    assert r["boot_method"] in ("BCa", "percentile") and r["boot_low"] <= r["delta"] <= r["boot_high"]


def test_the_verdict_of_a_row_follows_its_interval_and_the_margin(hand_table):
    r = row(hand_table, "better")
    assert r["significant"] and r["p_holm"] < 0.05 and not r["disagree"]
    within = -0.005 <= r["ci_low"] and r["ci_high"] <= 0.005
    assert r["margin"] == 0.005 and r["verdict"] == ("equivalent (negligible)" if within else "different")


def test_a_variant_identical_to_the_baseline_has_p_1(hand_table):
    same = row(hand_table, "same")
    assert same["delta"] == 0 and same["p"] == 1.0 and not same["significant"]


def test_a_variant_with_a_failed_seed_is_counted_and_not_tested(hand_table):
    base, flaky = seed_matrix(baseline_counts), seed_matrix(flaky_counts, range(2))
    f = row(hand_table, "flaky")
    assert f["status"] == "2/3 ok, 1 failed" and f["n_ok"] == 2 and f["fail_rate"] == pytest.approx(1 / 3)
    assert f["delta"] == pytest.approx(flaky.mean() - base.mean())
    assert f["test_note"] == "2 seeds: too few to test" and np.isnan(f["p_holm"]) and not f["significant"]
    assert np.isnan(f["ci_low"]) and f["verdict"] == ""  # no test, no headline interval: nothing to say
    assert np.isfinite(f["boot_low"])  # the descriptive bootstrap interval is still in table.csv


def test_the_failed_seed_scores_0_in_the_sensitivity_columns(hand_table):
    flaky = seed_matrix(flaky_counts, range(2))
    f = row(hand_table, "flaky")
    assert f["fail0_mean"] == pytest.approx(statistics.mean([*flaky.mean(axis=1), 0.0]))  # per seed
    assert f["fail0_std"] == pytest.approx(statistics.stdev([*flaky.mean(axis=1), 0.0]))


def test_a_variant_without_an_ok_run_has_a_row_saying_so(hand_table):
    broken = row(hand_table, "broken")
    assert broken["status"] == "0/2 ok, 1 failed, 1 diverged" and np.isnan(broken["dice_mean"])
    assert broken["fail0_mean"] == 0 and broken["test_note"] == "no ok run"


def test_holm_runs_within_each_declared_family_counting_every_declared_row(hand_table):
    fam = hand_table.groupby("family")["variant"].apply(list).to_dict()
    assert fam["one-factor"] == ["better", "same", "flaky", "broken"]
    assert fam["explicit"] == ["ds"] and fam["pruned ds"] == ["ds"] * 4
    one = hand_table[hand_table["family"] == "one-factor"]
    p = one["p"].to_numpy(float)
    expect = holm(np.where(np.isfinite(p), p, 1.0))  # flaky and broken: declared, untested
    tested = np.isfinite(p)
    assert one["p_holm"].to_numpy()[tested] == pytest.approx(expect[tested])
    assert (one["family_size"] == 4).all()


def test_pruned_forms_are_compared_with_their_own_networks_mean_form(hand_table):
    ds_mean = seed_matrix(lambda s: ds_counts(s, 4))
    for k in (1, 2, 3):
        lk = row(hand_table, "ds", f"L{k}")
        assert lk["reference"] == "ds (mean)" and lk["family"] == "pruned ds"
        assert lk["delta"] == pytest.approx(seed_matrix(lambda s, k=k: ds_counts(s, k)).mean() - ds_mean.mean())
        assert lk["delta"] < 0 and lk["ci_level"] == pytest.approx(1 - 0.05 / 4)
    l4 = row(hand_table, "ds", "L4")
    assert (l4["delta"], l4["ci_low"], l4["ci_high"]) == (0, 0, 0)  # paired: no seed blur
    assert row(hand_table, "ds")["reference"] == "baseline" and row(hand_table, "ds")["ci_level"] == pytest.approx(0.95)
    assert list(hand_table["form"][hand_table["variant"] == "ds"]) == ["mean", "L1", "L2", "L3", "L4"]


def test_cost_columns_are_medians_over_seeds_per_form(hand_table):
    assert row(hand_table, "ds", "L2")["gmacs"] == pytest.approx(2.0)
    assert row(hand_table, "better")["infer_img_s"] == pytest.approx(410.0)  # median over seeds
    assert row(hand_table, "baseline")["params_m"] == pytest.approx(1.0)


def copy_results(built, tmp_path, name="copy") -> Path:
    import shutil

    return Path(shutil.copytree(built[0], tmp_path / name))


def key_of(root: Path, variant: str, seed: int) -> str:
    return next(r.key for r in sweep_plan.read_plan(root).runs if (r.variant, r.seed) == (variant, seed))


def test_a_deleted_record_is_a_missing_run_with_the_command_that_completes_it(built, tmp_path):
    root = copy_results(built, tmp_path)
    key = key_of(root, "better", 2)
    Layout(root).record(key).unlink()
    rep = build_report(root, tmp_path / "rep", figures=False)
    csv = pd.read_csv(rep / "table.csv")
    r = row(csv, "better")
    assert r["status"] == "2/3 ok, 1 missing" and r["n_missing"] == 1 and r["n_planned"] == 3
    assert r["test_note"] == "2 seeds: too few to test" and not r["significant"]
    index = (rep / "index.md").read_text()
    assert "## Missing runs" in index and f"`better` seed 2 (`{key}`)" in index
    assert "unet-ablate run fab.toml --out results/fab" in index
    assert "2/3 ok, 1 missing" in (rep / "table.md").read_text()
    # a complete sweep has no such section
    assert "## Missing runs" not in (built[1] / "index.md").read_text()


def test_a_planned_variant_without_any_record_keeps_its_row(built, tmp_path):
    root = copy_results(built, tmp_path)
    for s in range(3):
        Layout(root).record(key_of(root, "same", s)).unlink()
    table = summary_table(load_records(root), "baseline", ORDER, sweep_plan.read_plan(root))
    r = row(table, "same")
    assert r["status"] == "0/3 ok, 3 missing" and np.isnan(r["dice_mean"]) and r["family"] == "one-factor"
    assert r["family_size"] == 4  # still a declared member of its family


def test_seeds_that_differ_between_arms_are_not_tested(built, tmp_path):
    root = copy_results(built, tmp_path)
    recs = load_records(root)
    extra = record("better", 5, [form("mean", better_counts(2), 2, 3e9)], arch="unet-bilinear", factor="up")
    extra["variant"], extra["key"] = "better", "f" * 16
    recs = [r for r in recs if not (r["variant"] == "better" and r["seed"] == 2)] + [extra]
    table = summary_table(recs, "baseline", ORDER)
    r = row(table, "better")
    assert r["test_note"] == "seeds 0, 1, 5 differ from baseline's 0, 1, 2: not paired"
    assert np.isnan(r["p_holm"]) and not r["significant"]
    assert np.isnan(r["delta_seed_5"]) and np.isfinite(r["delta_seed_0"])


def test_images_scored_by_only_some_seeds_are_counted_as_dropped(built, tmp_path):
    recs = load_records(built[0])
    for r in recs:
        if r["variant"] == "better" and r["seed"] == 1:   # this run scored 11 of the 12 images
            c = r["forms"][0]["counts"]
            c["images"], c["values"] = c["images"][:-1], c["values"][:-1]
            values = r["forms"][0]["image_metrics"]["values"]
            values.update({k: v[:-1] for k, v in values.items()})
    for metric in ("dice", "rand_f"):
        r = row(summary_table(recs, "baseline", ORDER, metric=metric), "better")
        assert r["n_pairs"] == 11 and r["n_dropped"] == 1


def test_without_a_plan_families_come_from_the_records(built):
    table = summary_table(load_records(built[0]), "baseline", ORDER)
    assert row(table, "better")["family"] == "one-factor" and row(table, "ds")["family"] == "explicit"
    assert row(table, "flaky")["status"] == "2/3 ok, 1 failed"  # planned = recorded


# --------------------------------------------------------------------------- outputs

def test_tables_and_index(built):
    _, out = built
    md = (out / "table.md").read_text()
    tex = (out / "table.tex").read_text()
    index = (out / "index.md").read_text()
    csv = pd.read_csv(out / "table.csv")
    runs = pd.read_csv(out / "runs.csv")
    assert list(csv["variant"].drop_duplicates()) == ORDER
    assert len(runs) == 3 * 4 + 3 * 4 + 3 + 2  # one row per run and form
    for text in (md, index):
        assert "2/3 ok, 1 failed" in text and "0/2 ok, 1 failed, 1 diverged" in text
        assert "2 seeds: too few to test" in text and "Seeds × images" in text and "3 × 12" in text
        assert "Dice (fail = 0)" in text and "pruned ds" in text
        assert "better†" in text and "same†" not in text
        assert "FlopCounterMode" in text and "64x64" in text and ENV["device_name"] in text
    assert "RuntimeError: out of memory (fabricated)" in index
    assert "loss is NaN at step 12 (fabricated)" in index
    assert f"PyTorch {torch.__version__}" in index and "steps 200, batch_size 4, patch 64" in index
    for name in FIGURES:
        assert f"({name}.png)" in index
    for needle in (r"\toprule", r"\midrule", r"\bottomrule", r"better$^\dagger$", r"batch\_size"):
        assert needle in tex
    assert "batch_size" not in tex.replace(r"batch\_size", "")


def test_figures_are_valid_pdf_and_png(built):
    _, out = built
    for name in FIGURES:
        pdf = (out / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF")
        assert b"/FontFile2" in pdf and b"/Type3" not in pdf
        with Image.open(out / f"{name}.png") as im:
            im.load()
            assert im.info["dpi"][0] == pytest.approx(300, abs=1)
            assert im.width > 500


def test_deterministic(built, tmp_path):
    root, out = built
    again = build_report(root, tmp_path / "r2", figures=False)
    for name in ("table.md", "table.csv", "table.tex", "runs.csv"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_without_figures_the_tables_are_the_same_and_no_figure_of_an_earlier_build_stays(built, tmp_path):
    import shutil

    root, out = built
    again = shutil.copytree(out, tmp_path / "r")  # a full build, now rebuilt without figures
    assert sorted(again.glob("*.png"))
    assert main(["report", str(root), "--out", str(again), "--no-figures"]) == 0
    for name in ("table.md", "table.csv", "table.tex", "runs.csv", "caption.txt"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    assert not sorted(again.glob("*.png")) and not sorted(again.glob("*.pdf"))
    index = (again / "index.md").read_text()
    assert index.count("*Note: not drawn: `report --no-figures`.*") == 5
    assert "](accuracy_cost.png)" not in index and "### Accuracy vs cost" in index


def test_qualitative_draws_ground_truth_from_the_results_store(built):
    _, out = built
    index = (out / "index.md").read_text()
    assert "(qualitative.png)" in index and "ground truth not shown" not in index
    assert (out / "qualitative.pdf").read_bytes().startswith(b"%PDF")


def test_without_stored_samples_the_qualitative_figure_says_so(tmp_path):
    root = make_results(tmp_path / "res", samples=False)
    index = (build_report(root, tmp_path / "rep") / "index.md").read_text()
    assert "(qualitative.png)" in index and "ground truth not shown" in index


def test_samples_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.random((3, 5, 7), dtype=np.float32) for _ in range(2)]
    masks = [rng.integers(0, 3, (5, 7)), np.full((5, 7), 255)]
    write_samples(tmp_path, "k", ["a", "b"], images, masks)
    back = read_samples(tmp_path, "k")
    assert list(back) == ["a", "b"]
    for (image, mask), (im, mk) in zip(back.values(), zip(images, masks)):
        assert np.abs(image - im).max() <= 0.5 / 255 + 1e-7  # 8-bit for display
        np.testing.assert_array_equal(mask, mk)
    assert read_samples(tmp_path, "other") == {}


def test_the_report_never_loads_a_data_set(built, tmp_path):
    """Built in a fresh process, the report reads the results store only: harness.data is
    never imported (so a report built elsewhere, or after the data moved, is the same). The
    figures are left out: their code imports nothing more when it runs (test_layers reads
    every import of every module, those inside functions too)."""
    root, _ = built
    code = ("import sys; from harness.report import build_report; "
            f"build_report({str(root)!r}, {str(tmp_path / 'r')!r}, figures=False); "
            "assert not any(m == 'harness.data' or m.startswith('harness.data.') for m in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr


def test_only_records_the_runner_writes_are_accepted(built, tmp_path):
    root, _ = built
    rec = load_records(root)[0]
    assert records.check_record(rec, "x") is rec
    for change, needle in [({"schema": 1}, "schema 1"), ({"variant": 3}, "variant is 3"),
                           ({"status": "done"}, "status 'done'")]:
        with pytest.raises(ValueError, match=needle):
            records.check_record({**rec, **change}, "x")
    for key in ("traceback", "env", "forms"):
        with pytest.raises(ValueError, match=f"{key} is missing"):
            records.check_record({k: v for k, v in rec.items() if k != key}, "x")


def test_no_deep_supervision_figure_without_heads(tmp_path):
    root = tmp_path / "res"
    for s in range(2):
        records.write_record(root, record("baseline", s, [form("mean", baseline_counts(s), s, 2e9)]))
    out = build_report(root, tmp_path / "rep")  # no sweep.json: the report still works
    assert not (out / "deep_supervision.pdf").exists()
    assert "no variant has pruned forms" in (out / "index.md").read_text()


# --------------------------------------------------------------------------- command line

def test_cli(built, tmp_path, capsys):
    root, _ = built
    assert main(["report", str(root), "--out", str(tmp_path / "cli"), "--no-figures"]) == 0
    assert str(tmp_path / "cli" / "index.md") in capsys.readouterr().out
    assert (tmp_path / "cli" / "table.md").is_file()


def test_cli_missing_folder_exits_2(fails_cleanly, tmp_path):
    fails_cleanly("report", tmp_path / "missing", "--out", tmp_path / "rep", names=["missing"],
                  untouched=[tmp_path / "rep"])


def test_cli_folder_without_records_exits_2(fails_cleanly, tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    fails_cleanly("report", tmp_path, "--out", tmp_path / "rep", names=["no run records"],
                  untouched=[tmp_path / "rep"])
    assert main(["report", str(tmp_path)]) == 2  # the same entry point in-process
    assert capsys.readouterr().err.count("\n") == 1


def test_records_of_another_sweep_are_left_out_with_a_note(built, tmp_path):
    import shutil

    root, out = built
    copy = shutil.copytree(root, tmp_path / "mixed")
    stray = record("baseline", 7, [form("mean", better_counts(0), 0, 2e9)])  # not in sweep.json
    records.write_record(copy, stray)
    rep = build_report(copy, tmp_path / "rep", figures=False)
    assert (rep / "table.csv").read_bytes() == (out / "table.csv").read_bytes()
    assert f"are not runs of the sweep in sweep.json and were left out (e.g. {stray['key']}.json)" in \
        (rep / "index.md").read_text()


def test_a_record_of_another_schema_is_left_out_named_and_counted_missing(built, tmp_path):
    import shutil

    root, _ = built
    copy = shutil.copytree(root, tmp_path / "old")
    path = Layout(copy).record(key_of(copy, "baseline", 1))
    path.write_text(path.read_text().replace(f'"schema": {records.SCHEMA}', '"schema": 1'))
    rep = build_report(copy, tmp_path / "rep", figures=False)
    index = (rep / "index.md").read_text()
    assert f"left out, {path}: not a run record of schema 2 or 3: it has schema 1" in index
    assert "`baseline` seed 1" in index  # its run is missing: the plan's command redoes it
    assert row(pd.read_csv(rep / "table.csv"), "baseline")["status"] == "2/3 ok, 1 missing"


@pytest.mark.parametrize("change", [
    lambda d: d.pop("families"),                           # written by an older version
    lambda d: d.update(runs=[["k", "v", 0]]),              # runs that are not tables
    lambda d: d.update(families={"better": "favourite"}),  # a family that does not exist
    lambda d: d["runs"][0].update(seed="0"),               # a seed that is not an integer
])
def test_cli_sweep_plan_that_is_not_one_exits_2(fails_cleanly, built, tmp_path, change):
    import json

    root = copy_results(built, tmp_path)
    d = json.loads((root / "sweep.json").read_text())
    change(d)
    (root / "sweep.json").write_text(json.dumps(d))
    fails_cleanly("report", root, "--out", tmp_path / "rep", names=["sweep.json", "not a sweep plan"],
                  untouched=[tmp_path / "rep", root])


def test_a_baseline_without_any_record_leaves_every_comparison_saying_so(built, tmp_path):
    root = copy_results(built, tmp_path)
    for s in range(3):
        Layout(root).record(key_of(root, "baseline", s)).unlink()
    rep = build_report(root, tmp_path / "rep", figures=False)
    csv = pd.read_csv(rep / "table.csv")
    assert row(csv, "baseline")["status"] == "0/3 ok, 3 missing"
    assert row(csv, "better")["test_note"] == "baseline: no ok run"
    assert np.isfinite(row(csv, "ds", "L1")["p"])  # the pruned family does not need the baseline
    assert "`baseline` seed 2" in (rep / "index.md").read_text()


# --------------------------------------------------------------------------- any metric as the headline

def test_a_lower_is_better_headline_keeps_its_sign_and_says_which_way(built, tmp_path):
    """The fabricated VI falls where Dice rises: "better" has a negative ΔVI, marked, and
    the table and figures say that lower is better."""
    plan = sweep_plan.read_plan(built[0])
    recs = load_records(built[0])
    dice, vi = (summary_table(recs, "baseline", ORDER, plan, metric=m) for m in ("dice", "vi"))
    assert row(dice, "better")["delta"] > 0 and row(vi, "better")["delta"] < 0
    assert row(vi, "better")["delta"] == pytest.approx(-2 * row(dice, "better")["delta"])
    assert row(vi, "better")["significant"] and not row(vi, "better")["higher_is_better"]
    assert row(vi, "better")["p_holm"] == pytest.approx(row(dice, "better")["p_holm"])  # same data, mirrored
    rep = build_report(built[0], tmp_path / "vi", metric="vi")
    table = (rep / "table.md").read_text()
    assert "ΔVI (lower is better) [adj. CI]" in table and "Dice (thin)" in table and "Rand F" in table
    assert "Headline metric (Δ, intervals, tests, marks): VI (lower is better)" in (rep / "caption.txt").read_text()
    index = (rep / "index.md").read_text()
    for name in ("dice", "dice_nn", "dice_thin", "cldice", "rand_f", "vi", "hd95", "nsd"):
        assert f"- `{name}` (" in index  # one sentence per metric the records hold
    assert (rep / "ablation.png").is_file() and (rep / "accuracy_cost.png").is_file()
    assert "lowest VI for the cost" in index


def test_records_of_schema_2_build_a_report_with_the_metrics_their_counts_give(built, tmp_path, fails_cleanly):
    import json

    root = copy_results(built, tmp_path)
    for path in (root / "runs").glob("*.json"):
        rec = json.loads(path.read_text())
        rec["schema"] = 2
        for f in rec["forms"]:
            f.pop("image_metrics")
        path.write_text(json.dumps(rec))
    rep = build_report(root, tmp_path / "old", figures=False)
    csv = pd.read_csv(rep / "table.csv")
    assert "dice_thin_mean" in csv and "rand_f_mean" not in csv  # counts give the thin class
    assert np.isfinite(row(csv, "better")["delta"])
    build_report(root, tmp_path / "old-thin", metric="dice_thin", figures=False)
    fails_cleanly("report", root, "--out", tmp_path / "no", "--metric", "rand_f",
                  names=["metric 'rand_f': no ok run of these records has it"], untouched=[tmp_path / "no"])
    fails_cleanly("report", root, "--out", tmp_path / "no", "--metric", "dcie",
                  names=["metric 'dcie': expected one of dice"], untouched=[tmp_path / "no"])


def test_training_mfu_is_a_column_only_where_the_device_peak_is_known(tmp_path):
    recs = records.load_records(make_results(tmp_path / "r"))
    assert "Train MFU" not in markdown(summary_table(recs, "baseline"), "c")   # CPU records: null
    for r in recs:
        if r["variant"] == "baseline":
            r["train"]["mfu"] = 0.25 + 0.01 * r["seed"]
    table = summary_table(recs, "baseline").set_index("variant")
    assert table.loc["baseline", "mfu"] == pytest.approx(0.26) and np.isnan(table.loc["better", "mfu"])
    assert "| 26.0% |" in markdown(table.reset_index(), "c")


# --------------------------------------------------------------------------- environments

def test_one_environment_is_not_mentioned(built):
    _, out = built
    assert "Environments differ" not in (out / "index.md").read_text()
    assert "Environments differ" not in (out / "table.md").read_text()


def test_records_of_other_versions_are_named_in_the_caption_and_on_the_front_page(tmp_path):
    """Results are reused across versions (a version is not part of the run key), never silently."""
    root = make_results(tmp_path / "results")
    paths = sorted((root / "runs").glob("*.json"))
    for p in paths[:3]:
        rec = records.read_record(p)
        rec["env"] = {**rec["env"], "torch": "2.15.0", "scipy": None}
        records.write_record(root, rec)
    out = build_report(root, tmp_path / "report")
    n = len(paths)
    line = (f"Environments differ between runs: torch {ENV['torch']} ({n - 3} runs) and 2.15.0 (3 runs); "
            f"scipy {ENV['scipy']} ({n - 3} runs) and unrecorded (3 runs).")
    assert line in (out / "index.md").read_text()
    assert (out / "table.md").read_text().count(line) == 1  # in the caption


# --------------------------------------------------------------------------- verdicts

def big_counts(seed: int, missed=0) -> np.ndarray:
    """12 images of objects of 400-510 pixels (Dice about 0.95, a little seed noise); each
    image misses ``missed`` (per image) more pixels."""
    rng = np.random.default_rng(seed)
    tp = 400 + 10 * np.arange(12) - np.asarray(missed) + rng.integers(0, 3, 12)
    fp, fn = 20 + rng.integers(0, 3, 12), 20 + np.asarray(missed) + rng.integers(0, 3, 12)
    return np.stack([tp, fp, fn, PIXELS - tp - fp - fn], axis=1)[:, None, :].astype(np.int64)


def test_verdicts_on_fabricated_records(tmp_path):
    """A real effect on every seed is different; a variant 1-2 pixels from the baseline is
    equivalent; and no row's interval excludes 0 without its mark."""
    root = tmp_path / "results"
    recs = []
    for s in range(3):
        recs.append(record("baseline", s, [form("mean", big_counts(s), s, 2e9)]))
        recs.append(record("better", s, [form("mean", big_counts(s, -15), s, 3e9)], arch="unet-bilinear",
                           factor="up"))
        recs.append(record("pixels", s, [form("mean", big_counts(s, 1 + np.arange(12) % 2), s, 1e9)],
                           arch="unet-relu6", factor="act"))
    for r in recs:
        records.write_record(root, r)
    table = summary_table(load_records(root), "baseline", ["baseline", "better", "pixels"])
    assert row(table, "better")["verdict"] == "different"
    px = row(table, "pixels")
    assert -0.002 < px["delta"] < 0 and px["verdict"].startswith("equivalent")
    assert -0.005 <= px["ci_low"] and px["ci_high"] <= 0.005
    tested = table[table["p_holm"].notna()]
    excludes = (tested["ci_low"] > 0) | (tested["ci_high"] < 0)
    assert (tested["significant"] | ~excludes).all() and not table["disagree"].any()
    wider = summary_table(load_records(root), "baseline", ["baseline", "better", "pixels"],
                          settings=ReportSettings(margin=0.0001))
    assert row(wider, "pixels")["verdict"] in ("different", "inconclusive")  # a margin it does not meet


def test_an_inconclusive_row_says_how_many_seeds_would_settle_it():
    from harness.report.stats import SeedModel
    from harness.report.summary import seeds_needed

    model = SeedModel(mean=0.01, se=0.008, df=2)  # 3 seeds: Δ 0.01, far from its MDE
    n = seeds_needed(model, 3, 0.95, 0.005)
    assert n is not None and n > 3
    settled = model.scaled(n, 3)
    assert settled.mde(0.95) <= 0.01 and model.scaled(n - 1, 3).mde(0.95) > 0.01
    assert seeds_needed(SeedModel(0.0, 0.1, 2), 3, 0.95, 0.005, most=20) is None
    # an image x variant term more seeds cannot shrink: no number of seeds settles it
    stuck = SeedModel(mean=0.003, se=0.008, df=2, fixed_var=0.006 ** 2)
    assert stuck.scaled(1000, 3).se == pytest.approx(0.006, rel=0.01)
    assert seeds_needed(stuck, 3, 0.95, 0.005) is None


def test_the_front_page_concludes_in_words(built):
    _, out = built
    index = (out / "index.md").read_text()
    conclusions = index.split("## Conclusions\n")[1].split("\n## ")[0]
    assert "At the margin ±0.005" in conclusions and "**Different**" in conclusions and "`better`" in conclusions
    assert "‡" not in index and "Verdict" in (out / "table.md").read_text()


def test_a_headline_chosen_after_the_runs_is_said(built, tmp_path):
    root, _ = built
    out = build_report(root, tmp_path / "r", metric="iou", figures=False)
    assert "the headline is 'iou' (`--metric`), not the sweep's declared 'dice'" in (out / "index.md").read_text()


def test_a_seed_the_machine_failed_is_left_out_of_fail0_not_scored_zero():
    from harness.report.summary import fail0

    scores = {0: pd.Series([0.8, 0.9]), 1: pd.Series([0.7, 0.9])}
    recs = [{"variant": "v", "seed": 0, "status": "ok", "cause": None},
            {"variant": "v", "seed": 1, "status": "ok", "cause": None},
            {"variant": "v", "seed": 2, "status": "failed", "cause": "run"}]
    assert fail0(recs, "v", scores, True)[0] == pytest.approx((0.85 + 0.8 + 0.0) / 3)
    recs[2]["cause"] = "environment"  # a full disk: rerun it, do not count it against the variant
    assert fail0(recs, "v", scores, True)[0] == pytest.approx((0.85 + 0.8) / 2)
    assert np.isnan(fail0(recs, "v", scores, False)[0])


@pytest.mark.parametrize("n,keyed", [(3, False), (13, True)])
def test_crowded_accuracy_cost_points_are_numbered_and_keyed(tmp_path, monkeypatch, n, keyed):
    """13 models within a hair of each other (the baselines preset): their names would
    overlap wherever they went, so the points carry numbers and a legend names them."""
    from harness.report import figures

    saved = []
    real = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, *a: saved.append(fig) or real(fig, *a))
    spread = 1.0 if not keyed else 0.002
    names = ["baseline"] + [f"smp-model-{k}" for k in range(1, n)]
    summary = pd.DataFrame({
        "variant": names, "form": "mean", "metric": "dice", "is_baseline": [True] + [False] * (n - 1),
        "dice_mean": [0.96 + spread * 0.01 * k for k in range(n)], "dice_std": 0.001,
        "gmacs": [0.8 + spread * k for k in range(n)], "infer_img_s": [50 + 30 * spread * k for k in range(n)],
        "infer_batch": 8, "macs_size": "128x128"})
    colors = dict(zip(names, [f"C{k % 10}" for k in range(n)]))
    assert figures.accuracy_cost(summary, colors, tmp_path).files
    [fig] = saved
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert len(texts) == 2 * n and all(t.isdigit() for t in texts) == keyed
    assert (len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == n) == keyed
    if keyed:
        assert fig.legends[0].get_texts()[1].get_text() == "2 smp-model-1"
