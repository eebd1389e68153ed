"""Factorial designs: the design points and their labels, fractions with their resolution
and aliases, effects against least squares on the +-1-coded design (noiseless: to 1e-9),
planted effects recovered through records and the report, and the intervals' coverage."""
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_sweep

from harness.report import build_report
from harness.report.effects import estimate_effects
from harness.spec.design import GENERATORS, design, fraction_for
from harness.spec.sweep import load_sweep
from harness.store import records, sweep_plan

AXES3 = {"act": ["relu", "relu6"], "up": ["transpose", "bilinear"], "norm": ["bn", "nobn"]}


def coded_ols(plan, means: np.ndarray) -> dict[str, float]:
    """Least squares on the +-1-coded model matrix (intercept, every term's column): an
    effect is twice its coefficient."""
    terms = plan.terms()
    x = np.column_stack([np.ones(len(plan.points))] + [[np.prod([p[i] for i in t]) for p in plan.points]
                                                        for t in terms])
    beta = np.linalg.lstsq(x, means, rcond=None)[0]
    return {plan.name(t): 2 * b for t, b in zip(terms, beta[1:])}


def test_a_full_design_over_three_axes_has_eight_points_in_standard_order():
    plan = design(AXES3)
    assert plan.points[:3] == ((-1, -1, -1), (1, -1, -1), (-1, 1, -1)) and len(set(plan.points)) == 8
    assert plan.resolution is None and len(plan.terms()) == 7
    assert [plan.name(t) for t in plan.terms()] == ["act", "up", "norm", "act:up", "act:norm", "up:norm",
                                                    "act:up:norm"]


def test_a_half_fraction_of_four_axes_is_resolution_four_with_its_aliases():
    axes = {**AXES3, "encoder": ["plain", "vgg16"]}
    plan = design(axes, fraction_for(4, "1/2", None))
    assert len(plan.points) == 8 and plan.resolution == 4
    assert all(p[3] == p[0] * p[1] * p[2] for p in plan.points)  # D = ABC
    assert len(plan.terms()) == 7  # 4 main effects + 3 alias sets of two-factor interactions
    assert "act:up is aliased with norm:encoder" in plan.alias_text()
    assert fraction_for(4, None, 4) == 1 and fraction_for(5, None, 5) == 1 and fraction_for(6, None, 4) == 2
    for (k, p) in GENERATORS:  # every standard design's columns are orthogonal and balanced
        cols = np.array(design({str(i): [0, 1] for i in range(k)}, p).points, dtype=float)
        assert np.allclose(cols.T @ cols, len(cols) * np.eye(k))


def test_effects_match_least_squares_on_noiseless_data():
    rng = np.random.default_rng(1)
    for plan in (design(AXES3), design({**AXES3, "encoder": ["plain", "vgg16"]}, 1)):
        means = rng.normal(0.9, 0.05, len(plan.points))
        # seeds and images: each point's score is its mean, plus a seed offset shared by
        # every point (a block), so the contrasts are exact
        y = means[:, None, None] + rng.normal(0, 0.01, (1, 3, 1)) + np.zeros((1, 1, 6))
        effects = estimate_effects(plan, y, None, "dice", 0.005).set_index("term")["estimate"]
        expected = coded_ols(plan, means)
        assert set(effects.index) == set(expected)
        assert max(abs(effects[t] - expected[t]) for t in expected) < 1e-9


def planted(coded: tuple[int, ...]) -> float:
    """0.95 - 0.05 [nobn] - 0.02 [bilinear] - 0.03 [nobn and bilinear] (act: no effect)."""
    _, up, norm = (c == 1 for c in coded)
    return 0.95 - 0.05 * norm - 0.02 * up - 0.03 * (norm and up)


def test_planted_effects_are_recovered_and_covered_under_noise():
    plan = design(AXES3)
    rng = np.random.default_rng(2)
    truth = {"norm": -0.065, "up": -0.035, "act": 0.0, "up:norm": -0.015}
    covered = {t: 0 for t in truth}
    for _ in range(40):
        y = np.array([planted(p) for p in plan.points])[:, None, None] + rng.normal(0, 0.004, (8, 3, 1)) \
            + rng.normal(0, 0.004, (8, 3, 20))
        e = estimate_effects(plan, y, None, "dice", 0.005).set_index("term")
        for t, v in truth.items():
            assert abs(e.loc[t, "estimate"] - v) < 0.006
            covered[t] += e.loc[t, "ci_low"] <= v <= e.loc[t, "ci_high"]
    assert all(c >= 36 for c in covered.values()), covered  # 99.3% intervals: at most a few misses


# the sweep "f": 3 seeds of the default-size membranes, the default protocol and measure, baseline
# unet-w8-d3 and only the variants a test gives
FACTORIAL = {"name": "f", "seeds": 3, "data": {"name": "membranes", "n_images": None, "size": None},
             "protocol": None, "measure": None, "variants": {"baseline": "unet-w8-d3", "one_factor": None}}


def write_sweep(tmp_path, **variants):
    path = tmp_path / "f.toml"
    tiny_sweep(path, FACTORIAL, variants=variants)
    return path


def test_a_sweep_with_a_factorial_plans_its_points_sharing_the_baseline_and_one_factor_runs(tmp_path):
    sweep = load_sweep(str(write_sweep(tmp_path, one_factor={"norm": ["nobn"]}, factorial=AXES3)))
    plan, labels = sweep.design
    assert len(labels) == 8 and labels[0] == "baseline" and "norm=nobn" in labels
    assert "act=relu6,up=bilinear,norm=nobn" in labels
    by_label = {v.label: v for v in sweep.variants}
    assert len(by_label) == 8 and by_label["act=relu6,up=bilinear"].family == "factorial"
    assert by_label["norm=nobn"].family == "one-factor"  # the one-factor run is that design point
    d = sweep_plan.design_dict(sweep.design)
    assert d["points"][0] == {"label": "baseline", "coded": [-1, -1, -1]} and d["resolution"] is None


@pytest.mark.parametrize("variants,needle", [
    ({"factorial": {"act": ["relu6", "relu"]}}, "at least|2 to"),
    ({"factorial": {"act": ["relu6", "relu"], "up": ["transpose", "bilinear"]}}, "first level must be the baseline's"),
    ({"factorial": {"act": ["relu", "relu6"], "up": ["transpose"]}}, "two levels"),
    ({"factorial": {"encoder": ["plain", "vgg16"], "channels": ["double", "matched"]}},
     "factorial \\(at encoder=vgg16, channels=matched\\).*plain. encoder only"),
    ({"factorial": {"act": ["relu", "relu6"], "up": ["transpose", "bilinear"]}, "fraction": "1/2"}, "no standard"),
    ({"fraction": "1/2"}, "need variants.factorial"),
])
def test_a_factorial_that_cannot_be_planned_is_one_error_up_front(tmp_path, variants, needle):
    with pytest.raises(ValueError, match=needle):
        load_sweep(str(write_sweep(tmp_path, **variants)))


def test_the_report_recovers_planted_effects_from_records(tmp_path):
    """Records whose Dice per image is 0.95 - 0.05 [nobn] - 0.02 [bilinear] - 0.03 [both]
    + small noise: effects.csv gives norm -0.065, up -0.035, act 0, up:norm -0.015."""
    from test_report import record

    sweep = load_sweep(str(write_sweep(tmp_path, factorial=AXES3)))
    plan, labels = sweep.design
    rng = np.random.default_rng(3)
    root = tmp_path / "results"
    written = []
    for label, coded in zip(labels, plan.points):
        spec = next(v.spec for v in sweep.variants if v.label == label)
        for seed in range(3):
            dice = np.clip(planted(coded) + rng.normal(0, 0.003) + rng.normal(0, 0.003, 12), 0.5, 0.999)
            fp = 20_000
            tp = np.round(dice * fp / (2 * (1 - dice))).astype(np.int64)  # 2tp / (2tp + fp) = dice
            counts = np.array([[[t, fp, 0, 10**7 - t - fp]] for t in tp], dtype=np.int64)
            rec = record(label, seed, [("mean", counts, {"params": 1, "macs": 1, "macs_size": [64, 64],
                                                         "input_size": [64, 64], "infer_img_s": 1.0,
                                                         "infer_img_s_iqr": 0.0, "infer_batch": 1,
                                                         "latency_ms": 1.0, "latency_ms_iqr": 0.0,
                                                         "peak_mem_mb": None}, [])],
                         arch=spec.name, factor=None)
            rec["is_baseline"], rec["factor"] = label == "baseline", "baseline" if label == "baseline" else None
            records.write_record(root, rec)
            written.append(rec)
    sweep_plan.write_plan(root, sweep_plan.SweepPlan(
        name="f", source="test", description="", command="", baseline="baseline",
        variants=tuple(labels), families={v.label: v.family for v in sweep.variants}, seeds=(0, 1, 2),
        runs=tuple(sweep_plan.PlanEntry(r["key"], r["variant"], r["seed"]) for r in written),
        design=sweep_plan.design_dict(sweep.design)))
    out = build_report(root, tmp_path / "report")
    e = pd.read_csv(out / "effects.csv").set_index("term")
    for term, value in {"norm": -0.065, "up": -0.035, "act": 0.0, "up:norm": -0.015}.items():
        assert abs(e.loc[term, "estimate"] - value) < 0.006, (term, e.loc[term, "estimate"])
        assert e.loc[term, "ci_low"] <= value <= e.loc[term, "ci_high"]
    assert {"term", "estimate", "ci_low", "ci_high", "p", "verdict"} <= set(e.reset_index().columns)
    assert e.loc["norm", "verdict"] == "different" and e.loc["up:norm", "verdict"] == "different"
    index = (out / "index.md").read_text()
    assert "## Factorial effects" in index and (out / "effects.md").is_file() and (out / "effects.tex").is_file()
    assert (out / "half_normal.png").is_file() and (out / "main_effects.png").is_file()
    assert (out / "interactions.png").is_file()


def test_the_front_page_names_the_interaction_behind_a_one_factor_delta():
    """norm's one-factor Δ (at up=transpose) is -0.05, its factorial main effect -0.065: the
    one-factor Δ lies outside the main effect's interval, and norm:up explains it."""
    from harness.report.effects import one_factor_text

    plan = design(AXES3)
    noise = np.random.default_rng(4).normal(0, 1e-3, (8, 3, 10))
    y = np.array([planted(p) for p in plan.points])[:, None, None] + noise
    effects = estimate_effects(plan, y, None, "dice", 0.005)
    summary = pd.DataFrame({"variant": ["norm=nobn", "act=relu6"], "form": "mean", "delta": [-0.05, 0.0]})
    [line] = one_factor_text(effects, plan, summary)
    assert line.startswith("- **norm**: the one-factor Δ -0.0500 (norm=nobn) lies outside the factorial main effect")
    assert "; up:norm (-0.015" in line and "measured at up=transpose only" in line
