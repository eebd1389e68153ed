"""The inference of the report (harness.report.stats) against hand computation, brute
force and simulation."""
import itertools

import numpy as np
import pytest
import scipy.stats

from harness.report.stats import ALPHA, hierarchical_bootstrap, holm, seed_model, seed_t_p, signflip_p


def brute_force_signflip(d) -> float:
    d = np.asarray(d, dtype=float)
    observed = abs(d.sum())
    sums = [abs(np.dot(s, d)) for s in itertools.product([-1, 1], repeat=d.size)]
    return float(np.mean(np.array(sums) >= observed - 1e-12))


# --------------------------------------------------------------------------- sign-flip test

def test_signflip_six_equal_positive_differences():
    """Only the all-plus and all-minus patterns reach |sum| = 6c: p = 2/64."""
    assert signflip_p([0.01] * 6) == pytest.approx(2 / 64)


def test_signflip_hand_examples():
    # +-1 +-2 +-3: sums 6, 4, 2, 0, 0, -2, -4, -6; |sum| >= 6 twice, >= 4 four times
    assert signflip_p([1, 2, 3]) == pytest.approx(2 / 8)
    assert signflip_p([1, -2, 3]) == pytest.approx(6 / 8)   # |sum| = 2: all but the two zeros
    assert signflip_p([1, 2, -3]) == pytest.approx(1.0)     # the differences cancel


@pytest.mark.parametrize("seed", range(6))
def test_signflip_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    d = np.round(rng.normal(0.01, 0.02, n), 4)   # rounding makes ties between patterns
    assert signflip_p(d) == pytest.approx(brute_force_signflip(d))


def test_signflip_ties_are_tolerant_of_float_noise():
    """Differences that are zero up to float noise are ties: they neither count as
    non-zero nor change the p-value; all ties give 1."""
    d = [0.1, 0.1, 0.1]
    assert signflip_p(d + [1e-17, -3e-16, 0.0]) == pytest.approx(signflip_p(d)) == pytest.approx(2 / 8)
    assert signflip_p([1e-17, 0.0, -2e-16]) == 1.0
    assert np.isnan(signflip_p([]))


def test_signflip_monte_carlo_beyond_twenty_agrees_with_exact():
    d = np.random.default_rng(3).normal(0.004, 0.02, 22)
    exact = signflip_p(d, exact_max=22)
    sampled = signflip_p(d)                  # 22 > 20 non-zero differences: Monte Carlo
    assert sampled == pytest.approx(exact, abs=0.015)
    assert sampled > 0                       # (1 + hits) / (1 + n): never exactly 0


def test_signflip_ignores_a_common_shift_it_cannot_see():
    """The test is of the mean: a positive mean with large spread is not significant."""
    assert signflip_p([0.3, -0.2, 0.25, -0.3, 0.2, 0.1]) > 0.3


# --------------------------------------------------------------------------- seed test

def test_seed_t_matches_scipy_and_its_edge_cases():
    d = [0.01, 0.03, 0.02, 0.025]
    assert seed_t_p(d) == pytest.approx(scipy.stats.ttest_1samp(d, 0).pvalue)
    same_images = np.tile(np.array(d)[:, None], (1, 6))    # no image variation: the same test
    assert seed_t_p(same_images) == pytest.approx(scipy.stats.ttest_1samp(d, 0).pvalue)
    assert seed_t_p([0.02, 0.02, 0.02]) == 0.0            # no spread, not zero: t infinite
    assert seed_t_p([0.0, 1e-17, -1e-17]) == 1.0           # no spread, zero
    assert np.isnan(seed_t_p([0.02])) and np.isnan(seed_t_p([0.01, np.nan, 0.02]))


def test_seed_t_standard_error_carries_the_image_interaction():
    """Additive differences d_ki = a_k + b_i (no residual): Var(Δ) = s_a^2 / S + s_b^2 / N,
    by hand, with S - 1 degrees of freedom."""
    a, b = np.array([0.01, 0.02, 0.04]), np.array([-0.02, 0.0, 0.01, 0.03, 0.05])
    d = a[:, None] + b[None, :]
    se = np.sqrt(a.var(ddof=1) / 3 + b.var(ddof=1) / 5)
    expect = 2 * scipy.stats.t.sf(d.mean() / se, 2)
    assert seed_t_p(d) == pytest.approx(expect)
    assert seed_t_p(d) > scipy.stats.ttest_1samp(d.mean(axis=1), 0).pvalue  # wider than seeds alone


# --------------------------------------------------------------------------- Holm

def test_holm_hand_example():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, np.nan, 0.01]) == pytest.approx([0.5, np.nan, 0.02], nan_ok=True)
    assert holm([0.4, 0.5]) == pytest.approx([0.8, 0.8])  # monotone, capped at 1 below


# --------------------------------------------------------------------------- hierarchical bootstrap

def exact_two_stage(ya, yb):
    """Every equally likely two-stage resample of a tiny table, enumerated: seed draws of
    each arm (with replacement, independent), then image draws (shared by both arms)."""
    sa, n = ya.shape
    sb = yb.shape[0]
    out = []
    for ia in itertools.product(range(sa), repeat=sa):
        ma = ya[list(ia)].mean(axis=0)
        for ib in itertools.product(range(sb), repeat=sb):
            mb = yb[list(ib)].mean(axis=0)
            for ii in itertools.product(range(n), repeat=n):
                out.append((ma - mb)[list(ii)].mean())
    return np.array(out)


YA = np.array([[0.90, 0.70, 0.80], [0.86, 0.64, 0.83]])   # 2 seeds x 3 images
YB = np.array([[0.85, 0.69, 0.70], [0.88, 0.60, 0.74]])


def test_two_stage_bootstrap_against_exact_enumeration():
    """Hand-made 2x3 tables: the 10,000 resampled Δ follow the exact two-stage
    distribution (all 4 x 4 x 27 = 432 resamples enumerated)."""
    exact = exact_two_stage(YA, YB)
    interval, boot = hierarchical_bootstrap(YA, YB, 0.9, want_distribution=True)
    assert boot.size == 10_000
    assert boot.mean() == pytest.approx(exact.mean(), abs=0.002)
    assert boot.std() == pytest.approx(exact.std(), rel=0.03)
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        assert np.quantile(boot, q) == pytest.approx(np.quantile(exact, q), abs=0.006)
    assert interval.method in ("BCa", "percentile")
    assert interval.low < YA.mean() - YB.mean() < interval.high
    # fixed RNG: the same numbers every time
    assert hierarchical_bootstrap(YA, YB, 0.9) == interval


def test_seed_variation_enters_the_interval():
    """With every image scoring the same, only seeds vary: an image-only bootstrap would
    give a zero-width interval; the two-stage one does not, and it widens with seed SD."""
    base = np.full((3, 10), 0.8)
    widths = []
    for sd in (0.0, 0.01, 0.02):
        shift = sd * np.array([[-1.0], [0.0], [1.0]])
        iv = hierarchical_bootstrap(base + shift, base - shift[::-1] * 0.5)
        widths.append(iv.high - iv.low)
    assert widths[0] == 0 and 0 < widths[1] < widths[2]


def test_paired_arms_resample_seeds_together():
    """A pruned form shares its runs with its reference: a constant shift per image pair
    is exactly that shift in every paired resample, not blurred by seed differences."""
    ya = np.array([[0.9, 0.7, 0.8, 0.6], [0.8, 0.6, 0.7, 0.5], [0.85, 0.65, 0.75, 0.55]])
    paired = hierarchical_bootstrap(ya - 0.02, ya, paired=True)
    assert (paired.low, paired.high) == pytest.approx((-0.02, -0.02))
    independent = hierarchical_bootstrap(ya - 0.02, ya)
    assert independent.high - independent.low > 0.05


def test_bca_reduces_to_the_one_level_bca_without_seed_variation():
    """Seeds that all score alike leave one level (images): the interval then agrees with
    scipy's BCa for the mean of the per-image differences (up to resampling noise)."""
    rng = np.random.default_rng(5)
    d = rng.gamma(1.0, 0.02, 25) - 0.005          # skewed: BCa and percentile differ
    ya, yb = np.tile(0.8 + d, (3, 1)), np.full((3, 25), 0.8)
    ours = hierarchical_bootstrap(ya, yb, 0.95)
    ref = scipy.stats.bootstrap((d,), np.mean, n_resamples=10_000, method="BCa",
                                rng=np.random.default_rng(1)).confidence_interval
    assert ours.method == "BCa"
    width = ref.high - ref.low
    assert ours.low == pytest.approx(ref.low, abs=0.05 * width)
    assert ours.high == pytest.approx(ref.high, abs=0.05 * width)


def test_no_interval_without_two_seeds_or_two_images():
    one_seed = hierarchical_bootstrap(YA[:1], YB[:1])
    assert np.isnan(one_seed.low) and one_seed.method == ""
    assert hierarchical_bootstrap(YA[:, :1], YB[:, :1]).method == ""


def test_constant_resamples_fall_back_to_percentile():
    iv = hierarchical_bootstrap(np.full((3, 5), 0.8), np.full((3, 5), 0.8))
    assert (iv.low, iv.high, iv.method) == (0.0, 0.0, "percentile")


# --------------------------------------------------------------------------- simulated level and power

SIM_IMAGES, SIM_RESIDUAL = 20, 0.02


def simulate(n: int, seed_sd: float, effect: float, interaction: float = 0.0, seeds: int = 3,
             seed: int = 0):
    """``n`` comparisons of two arms (``seeds`` x SIM_IMAGES images of per-image Dice):
    image difficulty shared by both arms, a random effect per (arm, seed) with SD
    ``seed_sd``, per-image noise, an optional image x arm interaction with SD
    ``interaction``, and a true difference ``effect``. Returns (p of the mark's test,
    p of the old test over images alone, seeds averaged away)."""
    rng = np.random.default_rng(seed)
    p_new, p_old = np.empty(n), np.empty(n)
    for k in range(n):
        image = rng.uniform(0.6, 0.95, SIM_IMAGES)
        shift = seed_sd * rng.normal(size=(2, seeds, 1))
        noise = SIM_RESIDUAL * rng.normal(size=(2, seeds, SIM_IMAGES))
        ya = image + effect + interaction * rng.normal(size=SIM_IMAGES) + shift[0] + noise[0]
        yb = image + shift[1] + noise[1]
        p_new[k] = seed_t_p(ya - yb)
        p_old[k] = signflip_p((ya - yb).mean(axis=0))
    return p_new, p_old


@pytest.mark.parametrize("seed_sd,interaction,seeds", [
    (0.0, 0.0, 3), (0.01, 0.0, 3), (0.02, 0.0, 3),        # the question: seed noise, 3 seeds
    (0.01, 0.02, 3), (0.016, 0.08, 5), (0.01, 0.02, 8),   # and an image x variant interaction
])
def test_the_mark_holds_its_level_under_seed_noise(seed_sd, interaction, seeds):
    """No true difference, 20 images: the share of marks over 500 simulated comparisons
    stays at or below 0.07 at alpha 0.05 whatever the seed noise, with or without an
    image x variant interaction, while a test over images alone, with each image's Dice
    averaged over seeds, does not once seeds vary."""
    p_new, p_old = simulate(500, seed_sd, 0.0, interaction, seeds, seed=seeds * 100 + int(seed_sd * 1000))
    assert np.mean(p_new < ALPHA) <= 0.07
    if seed_sd >= 0.01 and interaction == 0:
        assert np.mean(p_old < ALPHA) > 0.15


def test_the_mark_has_power_against_a_real_difference():
    """A true difference of 2 seed SDs (0.02) with seed SD 0.01: marked far more often
    than under the null, more with more seeds (the rates go into the notes)."""
    power = [np.mean(simulate(500, 0.01, 0.02, seeds=s, seed=11)[0] < ALPHA) for s in (3, 5)]
    assert 0.12 < power[0] < power[1]


# --------------------------------------------------------------------------- k-fold: fold x variant

def simulate_kfold(n: int, seeds: int, fold_sd: float, effect: float = 0.0, groups: bool = True,
                   folds: int = 3, per_fold: int = 10, seed: int = 0) -> np.ndarray:
    """``n`` k-fold comparisons (``folds`` test folds of ``per_fold`` images, fixed for every
    seed, as the data seed fixes them): a variant's advantage that depends on the folds it
    trained on (one offset per fold, SD ``fold_sd``, the same for every seed), seed noise
    (SD 0.01) and per-image noise (SD 0.02). Returns the p of the seed-level model, with the
    (seed, fold) as unit (``groups``) or the image."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(folds), per_fold)
    ps = np.empty(n)
    for k in range(n):
        image = rng.uniform(0.6, 0.95, labels.size)
        shift = 0.01 * rng.normal(size=(2, seeds, 1))
        noise = 0.02 * rng.normal(size=(2, seeds, labels.size))
        ya = image + effect + fold_sd * rng.normal(size=folds)[labels] + shift[0] + noise[0]
        yb = image + shift[1] + noise[1]
        ps[k] = seed_model(ya - yb, labels if groups else None).p
    return ps


@pytest.mark.parametrize("seeds", [3, 5, 8])
def test_kfold_with_a_fold_x_variant_interaction_holds_its_level(seeds):
    """Fold x variant SD 0.01, no true difference: with (seed, fold) units the mark stays at
    or below 0.07 over 1000 comparisons; with images as units it does not at 8 seeds."""
    assert np.mean(simulate_kfold(1000, seeds, 0.01, seed=seeds) < ALPHA) <= 0.07
    if seeds == 8:
        assert np.mean(simulate_kfold(1000, seeds, 0.01, groups=False, seed=seeds) < ALPHA) > 0.08


def test_kfold_units_keep_power_against_a_real_difference():
    assert np.mean(simulate_kfold(500, 8, 0.01, effect=0.02, seed=5) < ALPHA) > 0.3


def test_the_interval_excludes_zero_exactly_when_p_is_below_its_level():
    rng = np.random.default_rng(3)
    for _ in range(200):
        d = 0.01 * rng.normal(size=(int(rng.integers(3, 9)), 12)) + rng.normal(0, 0.01)
        model = seed_model(d)
        low, high = model.interval(0.99)
        assert (low > 0 or high < 0) == (model.p < 0.01)
        assert model.mde(0.99) > 0
