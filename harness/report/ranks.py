"""The comparison over several data sets (Demšar 2006, "Statistical comparisons of classifiers
over multiple data sets"), as pure numpy / scipy functions.

``friedman``: each variant ranked within each data set (1 = best, ties averaged), mean
ranks, the Friedman chi-square test (scipy, with its tie correction) and the Iman–Davenport
F form of it, df (k - 1, (k - 1)(N - 1)); the Nemenyi critical difference CD = q_alpha
sqrt(k (k + 1) / (6 N)), q_alpha the studentized range quantile (df = inf) over sqrt(2)
(``nemenyi_q``: Demšar's table), and the groups of variants whose mean ranks span less than
CD (the bars of the critical-difference diagram). Needs 3 variants and 2 data sets for the
test. With fewer than ``FEW_EXACT`` data sets the p-value is a permutation p
(``friedman_permutation_p``), and the Nemenyi groups are kept only where Friedman rejects
and the critical difference is smaller than the largest possible rank gap.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .stats import ALPHA


@dataclass(frozen=True)
class FriedmanResult:
    ranks: pd.DataFrame      # data sets x variants, 1 = best, ties averaged
    mean_ranks: pd.Series    # per variant, ascending (best first)
    statistic: float         # Friedman chi-square (NaN without a test)
    p: float
    iman_davenport_f: float
    iman_davenport_p: float
    cd: float                # Nemenyi critical difference at ``alpha`` (NaN with < 2 data sets)
    n_datasets: int
    n_variants: int
    groups: list             # tuples of variants not significantly different, best first
    left_out: list           # variants left out for a missing (NaN) score
    note: str = ""           # why there is no test, if there is none
    alpha: float = ALPHA
    higher_is_better: bool = True


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """The Nemenyi test's q_alpha for k variants: the studentized range quantile with
    infinite df over sqrt(2) (Demšar's table: 1.960, 2.343, 2.569, ... at 0.05)."""
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def _cd_groups(mean_ranks: pd.Series, cd: float) -> list[tuple]:
    """Maximal runs of consecutive variants (in mean-rank order) whose span is < ``cd``;
    runs of one variant, and runs inside another, are left out."""
    names, r = list(mean_ranks.index), mean_ranks.to_numpy(float)
    groups, last = [], 0
    for i in range(r.size):
        j = int(np.searchsorted(r, r[i] + cd, side="left")) - 1   # last with r_j - r_i < cd
        if j > max(i, last):   # j never decreases: a run ending at or before ``last`` is inside
            groups.append(tuple(names[i:j + 1]))
        last = j
    return groups


def friedman(scores: pd.DataFrame, higher_is_better: bool = True,
             alpha: float = ALPHA) -> FriedmanResult:
    """Friedman test, Iman–Davenport F and Nemenyi CD of ``scores`` (one row per data set,
    one column per variant: the headline metric). Variants with a NaN score are left out."""
    left_out = [c for c in scores.columns if scores[c].isna().any()]
    data = scores.drop(columns=left_out)
    n, k = data.shape
    values = data.to_numpy(float)
    ranks = pd.DataFrame(stats.rankdata(-values if higher_is_better else values, axis=1),
                         index=data.index, columns=data.columns)
    mean_ranks = ranks.mean().sort_values(kind="stable").rename("mean rank")
    chi2 = p = f = f_p = cd = float("nan")
    groups, note = [], ""
    if k >= 2 and n >= 2:
        cd = nemenyi_q(k, alpha) * np.sqrt(k * (k + 1) / (6 * n))
        groups = _cd_groups(mean_ranks, cd)
    if k < 3 or n < 2:
        note = f"no Friedman test: it needs at least 3 variants and 2 data sets, got {k} and {n}"
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            chi2, p = (float(x) for x in stats.friedmanchisquare(*values.T))
        if not np.isfinite(chi2):
            note = "no Friedman test: every variant ties on every data set"
        else:
            denom = n * (k - 1) - chi2
            f = float("inf") if denom <= 1e-9 * n * k else (n - 1) * chi2 / denom  # inf: the ranks agree
            f_p = float(stats.f.sf(f, k - 1, (k - 1) * (n - 1))) if np.isfinite(f) else 0.0
            if n < FEW_EXACT:  # the chi-square and F approximations need more data sets
                p = f_p = friedman_permutation_p(ranks.to_numpy(float))
    if not (np.isfinite(p) and p < alpha and cd < k - 1):
        groups = []  # no Nemenyi groups where Friedman does not reject or no pair could differ
    return FriedmanResult(ranks, mean_ranks, chi2, p, f, f_p, float(cd), n, k, groups,
                          left_out, note, alpha, higher_is_better)


FEW_EXACT = 5            # below this many data sets, the Friedman p is a permutation p
PERMUTATIONS = 10_000    # Monte Carlo permutations where enumerating all would take longer
MAX_ENUMERATE = 100_000  # at most this many rank patterns are enumerated


def friedman_permutation_p(ranks: np.ndarray, seed: int = 0) -> float:
    """The permutation p of Friedman's statistic for ``ranks`` (data sets x variants): the
    share of rank patterns, each data set's ranks permuted independently (the first held
    fixed, by symmetry), whose sum of squared rank sums is at least the observed one.
    Exact where there are at most ``MAX_ENUMERATE`` patterns, else a seeded Monte Carlo
    ((1 + hits) / (1 + n)). With 3 variants ranked alike on 2 data sets it is 1/6."""
    n, k = ranks.shape
    observed = (ranks.sum(axis=0) ** 2).sum()
    tol = 1e-9 * observed
    if math.factorial(k) ** (n - 1) <= MAX_ENUMERATE:
        orders = np.array(list(itertools.permutations(range(k))))
        total, hits = 0, 0
        for combo in itertools.product(range(len(orders)), repeat=n - 1):
            sums = ranks[0] + sum(ranks[i + 1][orders[c]] for i, c in enumerate(combo))
            hits += (sums ** 2).sum() >= observed - tol
            total += 1
        return hits / total
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permuted(np.broadcast_to(r, (PERMUTATIONS, k)), axis=1) for r in ranks[1:]])
    sums = ranks[0] + shuffled.sum(axis=0)
    hits = int(((sums ** 2).sum(axis=1) >= observed - tol).sum())
    return (1 + hits) / (1 + PERMUTATIONS)
