"""The comparison over several data sets (harness.report.stats.friedman, Demšar 2006) against
hand computation and scipy, and its two figures (harness.report.suite_figures)."""
import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from PIL import Image

from harness.report import suite_figures
from harness.report.ranks import _cd_groups, friedman, nemenyi_q
from harness.report.style import STYLE

# 4 data sets x 3 variants, no ties; higher is better. Ranks:
#   ds1: a 1, b 2, c 3   ds2: a 1, b 3, c 2   ds3: a 2, b 1, c 3   ds4: a 1, b 2, c 3
SCORES = pd.DataFrame({"a": [0.90, 0.85, 0.70, 0.95], "b": [0.80, 0.60, 0.90, 0.80],
                       "c": [0.70, 0.70, 0.60, 0.75]}, index=["ds1", "ds2", "ds3", "ds4"])


def test_friedman_by_hand():
    r = friedman(SCORES)
    n, k = 4, 3
    mean = np.array([5, 8, 11]) / 4                       # a 1.25, b 2.0, c 2.75
    chi2 = 12 * n / (k * (k + 1)) * ((mean ** 2).sum() - k * (k + 1) ** 2 / 4)
    assert chi2 == pytest.approx(4.5)
    assert r.statistic == pytest.approx(chi2)
    f = (n - 1) * chi2 / (n * (k - 1) - chi2)             # 13.5 / 3.5
    assert r.iman_davenport_f == pytest.approx(f)
    # 4 data sets: the p is the permutation p (every one of the 6**4 rank patterns, by hand)
    ranks = r.ranks.to_numpy()
    stat = lambda rows: (np.sum(rows, axis=0) ** 2).sum()  # noqa: E731
    patterns = [[row[list(o)] for row, o in zip(ranks, orders)]
                for orders in itertools.product(itertools.permutations(range(3)), repeat=4)]
    exact = np.mean([stat(p) >= stat(ranks) - 1e-9 for p in patterns])
    assert r.p == pytest.approx(exact) and r.iman_davenport_p == r.p
    assert list(r.mean_ranks.index) == ["a", "b", "c"]
    assert r.mean_ranks.to_numpy() == pytest.approx(mean)
    assert r.ranks.loc["ds2"].tolist() == [1, 3, 2]
    assert (r.n_datasets, r.n_variants, r.left_out, r.note) == (4, 3, [], "")
    assert r.cd == pytest.approx(2.343 * np.sqrt(3 * 4 / (6 * 4)), abs=1e-3)
    assert r.p > 0.05 and r.groups == []                  # Friedman does not reject: no post-hoc groups


def test_with_five_or_more_data_sets_the_p_values_are_the_approximations():
    scores = pd.concat([SCORES, SCORES.rename(index=lambda i: f"{i}b")])
    r = friedman(scores)
    assert r.p == pytest.approx(scipy.stats.chi2.sf(r.statistic, 2))
    assert r.iman_davenport_p == pytest.approx(scipy.stats.f.sf(r.iman_davenport_f, 2, 14))


def test_identical_rankings_on_two_data_sets_claim_no_tiny_p():
    """The exact p of 3 variants ranked alike on 2 data sets is 1/6 (F is infinite)."""
    r = friedman(pd.DataFrame({"a": [0.9, 0.8], "b": [0.8, 0.7], "c": [0.7, 0.6]}))
    assert r.iman_davenport_f == np.inf and r.p == pytest.approx(1 / 6) and r.iman_davenport_p == r.p
    assert r.groups == []


def test_lower_is_better_reverses_the_ranks():
    r = friedman(SCORES, higher_is_better=False)
    hi = friedman(SCORES)
    assert (r.ranks == 4 - hi.ranks).all().all()          # no ties: rank' = k + 1 - rank
    assert r.mean_ranks.to_dict() == pytest.approx({"c": 1.25, "b": 2.0, "a": 2.75})
    assert r.statistic == pytest.approx(hi.statistic)


def test_ties_get_average_ranks_and_match_scipy():
    scores = pd.DataFrame({"a": [0.9, 0.8, 0.7, 0.6, 0.9], "b": [0.9, 0.7, 0.8, 0.6, 0.5],
                           "c": [0.5, 0.8, 0.6, 0.6, 0.7], "d": [0.4, 0.6, 0.7, 0.5, 0.8]})
    r = friedman(scores)
    assert r.ranks.iloc[0].tolist() == [1.5, 1.5, 3, 4]
    assert r.ranks.iloc[3].tolist() == [2, 2, 2, 4]
    expected = scipy.stats.friedmanchisquare(*scores.to_numpy().T)
    assert r.statistic == pytest.approx(expected.statistic)
    assert r.p == pytest.approx(expected.pvalue)
    assert r.ranks.mean().to_dict() == pytest.approx(r.mean_ranks.to_dict())


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (6, 2.850)])
def test_nemenyi_q_is_demsar_table(k, q):
    assert nemenyi_q(k) == pytest.approx(q, abs=1e-3)


def test_nemenyi_q_at_alpha_010():
    assert nemenyi_q(2, 0.10) == pytest.approx(1.645, abs=1e-3)
    assert nemenyi_q(4, 0.10) == pytest.approx(2.291, abs=1e-3)


def test_groups_on_a_constructed_example():
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 2.6, "d": 3.0, "e": 4.5})
    assert _cd_groups(ranks, 1.2) == [("a", "b"), ("b", "c"), ("c", "d")]   # e alone: no bar
    ranks = pd.Series({"a": 1.0, "b": 1.1, "c": 1.2, "d": 3.0})
    assert _cd_groups(ranks, 0.5) == [("a", "b", "c")]                        # (b, c) is inside
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 2.0})                       # exact in binary
    assert _cd_groups(ranks, 0.5) == []                                      # a span of CD differs
    assert _cd_groups(ranks, 0.75) == [("a", "b"), ("b", "c")]


def test_groups_from_friedman():
    # 10 data sets: a always first, b second, c and d share 3rd/4th -> 1, 2, 3.5, 3.5
    rows = [[4, 3, 2, 1] if i % 2 else [4, 3, 1, 2] for i in range(10)]
    r = friedman(pd.DataFrame(rows, columns=list("abcd"), dtype=float))
    assert r.mean_ranks.to_dict() == pytest.approx({"a": 1, "b": 2, "c": 3.5, "d": 3.5})
    assert r.cd == pytest.approx(2.569 * np.sqrt(4 * 5 / 60), abs=1e-3)      # 1.483
    assert r.groups == [("a", "b"), ("c", "d")]                              # b..c spans 1.5


def test_perfect_agreement_gives_infinite_iman_davenport():
    r = friedman(pd.DataFrame([[3.0, 2.0, 1.0]] * 5, columns=list("abc")))
    assert r.statistic == pytest.approx(5 * 2)            # chi2 = N (k - 1), its maximum
    assert r.iman_davenport_f == np.inf and r.iman_davenport_p == 0.0


def test_nan_columns_are_left_out():
    scores = SCORES.assign(d=[0.5, np.nan, 0.4, 0.3], e=[0.1, 0.2, 0.3, 0.4])
    r = friedman(scores)
    assert r.left_out == ["d"]
    assert r.n_variants == 4 and "d" not in r.ranks.columns
    assert r.ranks["e"].tolist() == [4, 4, 4, 4]


def test_too_few_variants_or_data_sets():
    two = friedman(SCORES[["a", "b"]])
    assert np.isnan(two.statistic) and np.isnan(two.p) and np.isnan(two.iman_davenport_f)
    assert "3 variants" in two.note
    assert two.mean_ranks.to_dict() == pytest.approx({"a": 1.25, "b": 1.75})
    assert two.cd == pytest.approx(1.960 * np.sqrt(2 * 3 / 24), abs=1e-3)
    one_set = friedman(SCORES.iloc[:1])
    assert np.isnan(one_set.statistic) and np.isnan(one_set.cd) and one_set.groups == []
    assert "2 data sets" in one_set.note
    ties = friedman(pd.DataFrame(np.ones((4, 3)), columns=list("abc")))
    assert np.isnan(ties.statistic) and "ties" in ties.note


# --------------------------------------------------------------------------- figures

@pytest.fixture
def drawn(monkeypatch):
    """The figures that ``suite_figures`` saves, to look inside them."""
    figs = []
    save = suite_figures.save_figure
    monkeypatch.setattr(suite_figures, "save_figure",
                        lambda fig, out, name: figs.append(fig) or save(fig, out, name))
    with matplotlib.rc_context(STYLE):
        yield figs


def _check_files(res, tmp_path, name):
    assert [p.name for p in res.files] == [f"{name}.pdf", f"{name}.png"]
    assert (tmp_path / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    with Image.open(tmp_path / f"{name}.png") as im:
        assert im.info["dpi"][0] == pytest.approx(300, abs=1)


# 8 data sets: a best on each; b and c swap places on 3 of them (mean ranks 1, 2.375, 2.625)
STRONG = pd.DataFrame({"a": [0.9] * 8, "b": [0.8] * 5 + [0.6] * 3, "c": [0.7] * 5 + [0.7] * 3},
                      index=[f"ds{i}" for i in range(8)])


def test_cd_diagram(tmp_path, drawn):
    colors = {"a": (1, 0, 0), "b": (0, 1, 0), "c": (0, 0, 1)}
    result = friedman(STRONG)
    assert result.p < 0.05 and result.cd < 2
    res = suite_figures.cd_diagram(result, colors, tmp_path)
    _check_files(res, tmp_path, "cd_diagram")
    assert res.note == ""
    for needle in ("3 variants over 8 data sets", "χ²(2) = 12.25", "α = 0.05", f"CD = {result.cd:.2f}"):
        assert needle in res.caption
    ax = drawn[0].axes[0]
    texts = {t.get_text(): t for t in ax.texts}
    assert f"CD = {result.cd:.2f}" in texts
    assert texts["a (1.00)"].get_ha() == "right" and texts["c (2.62)"].get_ha() == "left"
    bars = [ln for ln in ax.lines if ln.get_linewidth() > 2]
    assert len(bars) == 1 and 1.0 < bars[0].get_xdata()[0] < 2.375 < 2.625 < bars[0].get_xdata()[1]


def test_no_cd_diagram_where_friedman_does_not_reject_or_no_pair_can_differ(tmp_path, drawn):
    res = suite_figures.cd_diagram(friedman(SCORES), {}, tmp_path)  # p about 0.13
    assert res.files == [] and res.note == "not drawn: Friedman does not reject, so there is no post-hoc comparison"
    two = friedman(STRONG.iloc[:2])  # 2 data sets: CD 2.34 exceeds the largest rank gap, 2
    res = suite_figures.cd_diagram(two, {}, tmp_path)
    assert res.files == [] and "no pair can be told apart" in res.note


def test_cd_diagram_without_a_test(tmp_path, drawn):
    res = suite_figures.cd_diagram(friedman(SCORES[["a", "b"]]), {}, tmp_path)
    assert res.files == [] and "3 variants" in res.note
    empty = suite_figures.cd_diagram(friedman(SCORES.iloc[:0]), {}, tmp_path / "none")
    assert empty.files == [] and empty.note.startswith("skipped")


def test_delta_heatmap(tmp_path, drawn):
    delta = pd.DataFrame({"ISBI": [0.05, -0.05], "VOC": [np.nan, 0.01]}, index=["v1", "v2"])
    sig = pd.DataFrame({"ISBI": [True, False], "VOC": [False, True]}, index=["v1", "v2"])
    res = suite_figures.delta_heatmap(delta, sig, "Dice", True, tmp_path)
    _check_files(res, tmp_path, "suite_heatmap")
    ax, cbar = drawn[0].axes
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(["+0.050†", "−0.050", "+0.010†", "—"])   # — for the NaN cell
    assert cbar.get_ylabel() == "Δ Dice (higher is better)"
    mesh = ax.collections[0]
    better = mesh.cmap(mesh.norm(0.05))
    assert better[2] > better[0] + 0.2                   # better is blue
    assert mesh.norm.vmin == pytest.approx(-0.05) and mesh.norm.vmax == pytest.approx(0.05)


def test_delta_heatmap_lower_is_better(tmp_path, drawn):
    delta = pd.DataFrame({"ISBI": [2.0, -1.0]}, index=["v1", "v2"])   # e.g. HD95 in pixels
    res = suite_figures.delta_heatmap(delta, delta > 10, "HD95", False, tmp_path)
    _check_files(res, tmp_path, "suite_heatmap")
    ax, cbar = drawn[0].axes
    assert cbar.get_ylabel() == "Δ HD95 (lower is better)"
    mesh = ax.collections[0]
    better, worse = mesh.cmap(mesh.norm(-1.0)), mesh.cmap(mesh.norm(2.0))
    assert better[2] > better[0] + 0.2 and worse[0] > worse[2] + 0.2    # blue better, red worse
    assert sorted(t.get_text() for t in ax.texts) == ["+2.000", "−1.000"]
    none = suite_figures.delta_heatmap(delta * np.nan, delta > 10, "HD95", False, tmp_path / "x")
    assert none.files == [] and none.note.startswith("skipped")
