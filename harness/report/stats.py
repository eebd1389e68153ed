"""The inference of the report, as pure numpy / scipy functions: arrays in, numbers out.

Two sources of variation stand behind every Δ: the test images and the training seeds.
An arm (one variant and inference form) is a matrix ``Y`` of per-image scores, one row per
ok seed and one column per test image (the same images, in the same order, in both arms).

* ``seed_model``: Δ, its standard error and degrees of freedom from the seed-level model
  of the paired differences (seed k vs seed k): a two-way (seeds x images) random-effects
  ANOVA, so an image x variant interaction counts as well as seed noise, df = seeds - 1;
  with k-fold, (seed, fold) units and Satterthwaite's df, so a fold x variant interaction
  counts too. One model gives the mark (its t test), the headline interval (its t interval
  at the family's Bonferroni level: it excludes 0 exactly when p is below that level) and
  the minimum detectable effect (the |Δ| found with 80% power). Simulated
  (``tests/test_stats.py``; 3, 5 and 8 seeds, seed noise with and without an image x
  variant or fold x variant interaction) its false-positive rate stays at or below alpha
  within simulation error; this is a measured property, not a theorem.
* ``hierarchical_bootstrap``: a secondary, descriptive interval of Δ from a two-stage
  bootstrap: seeds resampled within each arm (the same draws for both arms when their
  seeds are paired), then test images resampled, paired across arms. Vectorized; BCa
  where it is defined, percentile otherwise. With 3 seeds its seed stage is coarse (10
  distinct draws) and it under-covers, which is why it is not the headline.
* ``signflip_p``: exact sign-flip permutation test of the mean of paired differences
  (meet-in-the-middle enumeration of all 2**n sign patterns for n <= ``EXACT_MAX``
  non-zero differences, a seeded Monte Carlo beyond): an exploratory p over test images.
* ``holm``: Holm step-down adjustment; ``pareto_front``. The comparison over several
  data sets is ``harness.report.ranks``'s.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

ALPHA = 0.05
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
EXACT_MAX = 20        # sign-flip enumeration up to 2**20 patterns; Monte Carlo beyond
N_FLIPS = 10_000      # Monte Carlo sign flips beyond EXACT_MAX
ZERO_TOL = 1e-12      # |difference| at or below this is a tie (float noise of equal scores)
CHUNK = 2_000         # bootstrap resamples per block (bounds memory for large test sets)
MIN_TAIL = 10         # BCa needs this many resamples beyond each adjusted quantile


# --------------------------------------------------------------------------- tests

def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries are left out (and stay NaN).

    With the m finite p-values sorted ascending, p_(i) becomes
    max_{j <= i} min(1, (m - j + 1) p_(j)) (1-based i, j)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def _pattern_sums(d: np.ndarray) -> np.ndarray:
    """The sums of ``d`` under all 2**len(d) sign patterns."""
    sums = np.zeros(1)
    for x in d:
        sums = np.concatenate([sums + x, sums - x])
    return sums


def signflip_p(diff, exact_max: int = EXACT_MAX, n_flips: int = N_FLIPS,
               seed: int = BOOTSTRAP_SEED) -> float:
    """Two-sided sign-flip permutation p-value of the mean of paired differences.

    Under the null each difference is as likely to have either sign; the p-value is the
    share of sign patterns whose |sum| is at least the observed |sum|. Differences within
    ``ZERO_TOL`` of zero are ties: flipping them changes nothing, so they are left out of
    the enumeration (never out of the mean). Exact for up to ``exact_max`` non-zero
    differences (e.g. 6 equal positive ones: 2/64); beyond, ``n_flips`` seeded random
    patterns with p = (1 + hits) / (1 + n_flips). 1.0 when every difference is a tie,
    NaN without data or with a NaN."""
    d = np.asarray(diff, dtype=float)
    if d.size == 0 or np.isnan(d).any():
        return float("nan")
    d = d[np.abs(d) > ZERO_TOL]
    if d.size == 0:
        return 1.0
    observed = abs(d.sum())
    tol = ZERO_TOL * d.size  # the observed pattern itself always counts
    if observed <= tol:      # the differences cancel: every pattern is at least as extreme
        return 1.0
    if d.size <= exact_max:
        half = d.size // 2
        a, b = _pattern_sums(d[:half]), np.sort(_pattern_sums(d[half:]))
        upper = b.size - np.searchsorted(b, observed - tol - a, side="left")   # a + b >= +obs
        lower = np.searchsorted(b, -observed + tol - a, side="right")          # a + b <= -obs
        return float((upper + lower).sum() / (a.size * b.size))
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_flips, d.size))
    hits = int((np.abs(signs @ d) >= observed - tol).sum())
    return (1 + hits) / (1 + n_flips)


POWER = 0.8  # the power at which a row's minimum detectable effect is stated


@dataclass(frozen=True)
class SeedModel:
    """Δ of two paired arms with its standard error and degrees of freedom, from the
    seed-level model of the differences (``seed_model``): the mark (``p``), the headline
    interval and the minimum detectable effect all come from it, so an interval that
    excludes 0 at the family's level is a p below it, and the other way round."""
    mean: float
    se: float
    df: float
    fixed_var: float = 0.0  # the part of se^2 more seeds do not shrink (the image or fold x variant term)

    @property
    def p(self) -> float:
        """Two-sided t test of Δ = 0 (no spread at all: 1.0 when Δ is zero, else 0.0)."""
        if self.se <= ZERO_TOL:
            return 1.0 if abs(self.mean) <= ZERO_TOL else 0.0
        return float(2 * stats.t.sf(abs(self.mean) / self.se, self.df))

    def interval(self, level: float) -> tuple[float, float]:
        half = float(stats.t.ppf(0.5 + level / 2, self.df)) * self.se
        return self.mean - half, self.mean + half

    def mde(self, level: float, power: float = POWER) -> float:
        """The |Δ| that this test, at ``level`` (two-sided), finds with ``power``, given
        the standard error and degrees of freedom observed."""
        return float((stats.t.ppf(0.5 + level / 2, self.df) + stats.t.ppf(power, self.df)) * self.se)

    def scaled(self, seeds: int, now: int) -> SeedModel:
        """This model with ``seeds`` seeds instead of ``now``, at the variances observed: the
        seed part of the variance shrinks as 1/seeds, the image (or fold) x variant part
        does not; the degrees of freedom grow with the seeds."""
        var = self.fixed_var + (self.se ** 2 - self.fixed_var) * now / seeds
        return SeedModel(self.mean, float(np.sqrt(var)), self.df + seeds - now, self.fixed_var)


def _two_way(d: np.ndarray) -> tuple[float, float, float, float, float]:
    """(variance of the grand mean, its rows-only part, MS_rows, MS_columns, MS_residual) of a balanced two-way
    random-effects model of ``d`` (rows: seeds): MS_rows / (RC) + MS_columns / (RC) -
    MS_residual / (RC), never below the rows-only estimate s^2 / R of the row means."""
    rows, cols = d.shape
    per_row = d.mean(axis=1)
    ms_rows = per_row.var(ddof=1) * cols
    var = per_row.var(ddof=1) / rows
    if cols == 1:
        return var, var, ms_rows, 0.0, 0.0
    per_col = d.mean(axis=0)
    resid = d - per_row[:, None] - per_col[None, :] + d.mean()
    ms_resid = (resid ** 2).sum() / ((rows - 1) * (cols - 1))
    ms_cols = per_col.var(ddof=1) * rows
    full = max(var, var + per_col.var(ddof=1) / cols - ms_resid / (rows * cols))
    return full, var, ms_rows, ms_cols, ms_resid


def seed_model(diff, groups=None) -> SeedModel | None:
    """The seed-level model of paired differences (seeds x images: row k is seed k of one
    arm minus seed k of the other); None with fewer than two seeds or any NaN.

    The standard error is that of a two-way random-effects model (d_ki = Δ + seed_k +
    image_i + e_ki, balanced ANOVA, as a mixed model estimates it), so an image x variant
    interaction enters as well as seed noise; never below the seed-only s^2 / S of the
    per-seed Δ (then it is the paired t test over seeds; so it is for a vector of per-seed
    Δ). Degrees of freedom: seeds - 1 (conservative).

    ``groups`` (one label per image: k-fold, its test fold) makes the (seed, fold) the
    unit: the images of each fold are averaged first, and the model is seeds x folds, so
    that a variant's advantage that depends on which folds it trained on (a fold x variant
    interaction, the same for every seed) counts too. Degrees of freedom then by
    Satterthwaite, at most seeds - 1 (few folds: few degrees of freedom)."""
    d = np.asarray(diff, dtype=float)
    d = d[:, None] if d.ndim == 1 else d  # a vector: one Δ per seed
    seeds = d.shape[0]
    if seeds < 2 or np.isnan(d).any():
        return None
    df = seeds - 1.0
    if groups is not None:
        labels = np.asarray(groups)
        d = np.stack([d[:, labels == g].mean(axis=1) for g in sorted(set(labels.tolist()))], axis=1)
    var, rows_only, ms_rows, ms_cols, ms_resid = _two_way(d)
    if groups is not None and d.shape[1] > 1 and var > ZERO_TOL ** 2:
        rows, cols = d.shape
        terms = (ms_rows ** 2 / (rows - 1) + ms_cols ** 2 / (cols - 1)
                 + ms_resid ** 2 / ((rows - 1) * (cols - 1)))
        df = float(np.clip((var * rows * cols) ** 2 / terms if terms > 0 else df, 1.0, df))
    return SeedModel(float(d.mean()), float(np.sqrt(max(var, 0.0))), df, max(0.0, var - rows_only))


def seed_t_p(diff, groups=None) -> float:
    """The p of ``seed_model`` (NaN where there is no model)."""
    model = seed_model(diff, groups)
    return float("nan") if model is None else model.p


# --------------------------------------------------------------------------- interval

@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str       # "BCa" | "percentile" | "" (no interval)


NO_INTERVAL = Interval(float("nan"), float("nan"), "")


def _weights(rng, n: int, size: int) -> np.ndarray:
    """Bootstrap weights: (size, n) resample counts divided by n (each row sums to 1)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=size) / n


def _jackknife_contributions(ya: np.ndarray, yb: np.ndarray, paired: bool) -> np.ndarray:
    """Per-unit jackknife influence on Δ, scaled to the unit's level, for the BCa
    acceleration: one value per test image and per seed (per seed pair when paired)."""
    def level(estimates: np.ndarray) -> np.ndarray:
        n = estimates.size
        return (n - 1) * (estimates.mean() - estimates) / n if n > 1 else np.zeros(0)

    ma, mb = ya.mean(axis=0), yb.mean(axis=0)                    # per image, over seeds
    n = ma.size
    parts = [level(((ma - mb).sum() - (ma - mb)) / max(n - 1, 1))]  # leave one image out
    if paired:
        d = (ya - yb).mean(axis=1)
        parts.append(level((d.sum() - d) / max(d.size - 1, 1)))
    else:
        for y, sign in ((ya, 1.0), (yb, -1.0)):
            s = y.mean(axis=1)
            parts.append(sign * level((s.sum() - s) / max(s.size - 1, 1)))
    return np.concatenate(parts)


def hierarchical_bootstrap(ya, yb, level: float = 1 - ALPHA, paired: bool = False,
                           n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                           want_distribution: bool = False):
    """Two-stage bootstrap interval of Δ = mean(ya) - mean(yb).

    ``ya`` (seeds_a, images) and ``yb`` (seeds_b, images) share their image columns. Each
    resample draws seeds with replacement within each arm (the same seed draws for both
    arms when ``paired``: row k of both is seed k), then test images with
    replacement, the same images for both arms, and takes the weighted Δ. BCa (bias from
    the resamples, acceleration from a jackknife over images and seeds: a first-order
    approximation that leaves out the seed x image term); percentile where BCa is
    undefined (every resample on one side of Δ, no jackknife spread) or would rest on
    fewer than ``MIN_TAIL`` resamples beyond a bound. Needs at
    least two seeds per arm and two images (else no interval: seed variation would be
    invisible). Returns an ``Interval`` (and the resampled Δs with ``want_distribution``)."""
    ya, yb = np.asarray(ya, dtype=float), np.asarray(yb, dtype=float)
    if min(ya.shape[0], yb.shape[0]) < 2 or ya.shape[1] < 2 or ya.shape[1] != yb.shape[1]:
        return (NO_INTERVAL, np.zeros(0)) if want_distribution else NO_INTERVAL
    if paired and ya.shape != yb.shape:
        raise ValueError("paired arms must have the same seeds")
    rng = np.random.default_rng(seed)
    estimate = ya.mean() - yb.mean()
    out = []
    for start in range(0, n_resamples, CHUNK):
        size = min(CHUNK, n_resamples - start)
        wa = _weights(rng, ya.shape[0], size)
        wb = wa if paired else _weights(rng, yb.shape[0], size)
        wi = _weights(rng, ya.shape[1], size)
        out.append(np.einsum("bi,bi->b", wa @ ya - wb @ yb, wi))
    boot = np.concatenate(out)

    tail = (1 - level) / 2
    quantiles, method = np.array([tail, 1 - tail]), "percentile"
    below = np.mean(boot < estimate - ZERO_TOL) + 0.5 * np.mean(np.abs(boot - estimate) <= ZERO_TOL)
    u = _jackknife_contributions(ya, yb, paired)
    spread = float((u ** 2).sum())
    if 0 < below < 1 and spread > 0:
        z0 = special.ndtri(below)
        accel = float((u ** 3).sum()) / (6 * spread ** 1.5)
        z = special.ndtri(quantiles)
        with np.errstate(divide="ignore", invalid="ignore"):
            adjusted = special.ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z)))
        # BCa only where the adjusted quantiles are ordered and each leaves at least
        # MIN_TAIL resamples beyond it (a far tail of a few resamples is noise, not BCa)
        if (np.all(np.isfinite(adjusted)) and adjusted[0] < adjusted[1]
                and boot.size * min(adjusted[0], 1 - adjusted[1]) >= MIN_TAIL):
            quantiles, method = adjusted, "BCa"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low, high = np.quantile(boot, quantiles)
    result = Interval(float(low), float(high), method) if np.isfinite([low, high]).all() else NO_INTERVAL
    return (result, boot) if want_distribution else result


# --------------------------------------------------------------------------- fronts

def pareto_front(cost, value, minimize_cost: bool = True) -> np.ndarray:
    """Boolean mask of the points no other point dominates (value is maximized; cost is
    minimized, or maximized with ``minimize_cost=False``). Non-finite points are off it."""
    c = np.asarray(cost, dtype=float) * (1 if minimize_cost else -1)
    v = np.asarray(value, dtype=float)
    ok = np.isfinite(c) & np.isfinite(v)
    front = np.zeros(c.shape, dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        front[i] = not dominated.any()
    return front
