"""``[tune]``: each variant at its own best point of a grid of protocol fields, chosen from
validation scores alone; only the chosen runs reach the tables and verdicts."""
import pandas as pd
import pytest
from conftest import tiny_sweep
from test_report import baseline_counts, better_counts, form, record

from harness.cli import main
from harness.report import build_report
from harness.report.tuning import choose_tuned
from harness.scheduling.planning import load_all, plan
from harness.spec.sweep import load_sweep
from harness.store import records
from harness.store.records import load_records

TUNE = {"protocol.lr": [1e-3, 3e-3, 1e-2]}


def test_a_tuned_sweep_plans_every_point_for_every_variant_and_seed(tmp_path):
    path = tmp_path / "t.toml"
    tiny_sweep(path, tune=TUNE)
    sweep = load_sweep(str(path))
    assert sweep.tune.points == [{"lr": 1e-3}, {"lr": 3e-3}, {"lr": 1e-2}] and sweep.tune.by == "variant"
    runs = plan(sweep, load_all(sweep))
    assert len(runs) == 3 * len(sweep.variants) * len(sweep.seeds)
    assert {r.spec.protocol.lr for r in runs} == {1e-3, 3e-3, 1e-2}
    assert {r.labels.tuning["values"]["lr"] for r in runs if r.labels.variant == "up=bilinear"} == {1e-3, 3e-3, 1e-2}


@pytest.mark.parametrize("tune,needle", [
    ({"protocol.colour": [1, 2]}, "tune.protocol.colour: expected protocol.<field> of \\[protocol\\]"),
    ({"lr": [1e-3, 1e-2]}, "tune.lr: expected protocol.<field>"),
    ({"protocol.lr": 1e-3}, "tune.protocol.lr: expected a list of at least two values"),
    ({"protocol.lr": [1e-3]}, "expected a list of at least two values"),
    ({"protocol.lr": [1e-3, 0.001]}, "tune.protocol.lr: a value is given twice"),
    ({"protocol.lr": [1e-3, "x"]}, "tune.protocol.lr: protocol.lr: expected a number > 0"),
    ({"protocol.checkpoint_every": [0, 5]}, "it changes how a run resumes"),
    ({"protocol.lr": [1e-3, 1e-2], "by": "seed"}, "tune.by: expected variant \\| variant-seed"),
])
def test_a_bad_tuning_grid_is_one_line_with_nothing_written(tmp_path, fails_cleanly, tune, needle):
    path = tmp_path / "bad.toml"
    tiny_sweep(path, tune=tune)
    fails_cleanly("run", path, "--out", tmp_path / "o", names=["bad.toml"], untouched=[tmp_path / "o"])
    with pytest.raises(ValueError, match=needle):
        load_sweep(str(path))


def test_a_variant_that_sets_a_tuned_field_itself_is_an_error(tmp_path):
    path = tmp_path / "c.toml"
    tiny_sweep(path, tune=TUNE, variants={"one_factor": {"protocol.lr": [3e-4]}})
    with pytest.raises(ValueError, match="tune.protocol.lr: variant 'lr=0.0003' sets it itself"):
        load_sweep(str(path))


def candidate(variant: str, seed: int, lr: float, val: float, counts) -> dict:
    rec = record(variant, seed, [form("mean", counts, seed, 2e9)])
    rec["key"] = f"{variant}-{seed}-{lr}".replace("=", "_").replace(".", "p")
    rec["tuning"] = {"values": {"lr": lr}, "by": "variant"}
    rec["train"]["best_val_score"] = val
    return rec


def test_the_choice_reads_validation_scores_never_test_scores():
    """The point whose runs score best on the test split (better_counts) but worse on
    validation is not chosen."""
    recs = [candidate("baseline", s, 1e-3, 0.80 + 0.01 * s, baseline_counts(s)) for s in range(3)]
    recs += [candidate("baseline", s, 1e-2, 0.70 + 0.01 * s, better_counts(s)) for s in range(3)]
    kept, table = choose_tuned(recs)
    assert {r["tuning"]["values"]["lr"] for r in kept} == {1e-3} and len(kept) == 3
    assert table.set_index("point").loc["lr 0.001", "chosen"] and not table.set_index("point").loc["lr 0.01", "chosen"]
    assert table.set_index("point").loc["lr 0.001", "val_score"] == pytest.approx(0.81)


def test_a_lower_is_better_selection_and_a_grid_edge_are_read_their_way():
    recs = [candidate("v", 0, lr, val, baseline_counts(0)) for lr, val in ((1e-3, 0.5), (3e-3, 0.3), (1e-2, 0.1))]
    for r in recs:
        r["train"]["selected_on"] = "hd95"  # lower is better: 0.1 wins, at the grid's edge
    kept, table = choose_tuned(recs)
    assert [r["tuning"]["values"]["lr"] for r in kept] == [1e-2]
    assert table[table["chosen"]]["edge"].item()


def test_failed_candidates_never_win_and_records_without_tuning_pass_through():
    plain = record("baseline", 0, [form("mean", baseline_counts(0), 0, 2e9)])
    broken = candidate("v", 0, 1e-2, float("nan"), baseline_counts(0))
    broken["status"] = "diverged"
    fine = candidate("v", 0, 1e-3, 0.2, baseline_counts(0))
    kept, table = choose_tuned([plain, broken, fine])
    assert [r["key"] for r in kept] == [plain["key"], fine["key"]]
    assert choose_tuned([plain]) == ([plain], None)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuned")
    path = root / "t.toml"
    tiny_sweep(path, seeds=3, tune=TUNE)
    assert main(["run", str(path), "--out", str(root / "out"), "--no-progress", "-q"]) == 0
    return root / "out"


def test_the_report_of_a_tuned_sweep_keeps_one_point_per_variant(tuned, tmp_path):
    rep = build_report(tuned, tmp_path / "rep", figures=False)
    table = pd.read_csv(rep / "tuning.csv")
    assert len(table) == 6 and (table.groupby("variant")["chosen"].sum() == 1).all()
    recs = load_records(tuned)
    chosen = dict(zip(table[table.chosen].variant, table[table.chosen].point))
    summary = pd.read_csv(rep / "table.csv").set_index("variant")
    for variant, point in chosen.items():
        mine = [r for r in recs if r["variant"] == variant and f"lr {r['tuning']['values']['lr']}" == point]
        assert len(mine) == 3  # every seed of the chosen point, and only they
        dice = sum(r["forms"][0]["metrics"]["dice"] for r in mine) / 3
        assert summary.loc[variant, "dice_mean"] == pytest.approx(dice, abs=1e-5)  # (table.csv: 6 digits)
        assert summary.loc[variant, "status"] == "3/3 ok"  # the other points are no missing runs
    index = (rep / "index.md").read_text()
    assert "Tuned on validation scores only (the test split played no part): `baseline` chose lr" in index
    assert "**Tuning.** Every variant trained at each point of the grid (lr 0.001, lr 0.003, lr 0.01)" in index


def test_records_of_a_tuned_sweep_say_they_are_candidates(tuned):
    assert all(r["tuning"]["by"] == "variant" for r in records.load_records(tuned))


def test_power_from_a_tuned_pilot_reads_the_chosen_runs_only(tmp_path):
    """Every candidate of a variant and seed shares its label: power must read what the report
    reads. Here the point not chosen sorts last, where a mixed reading would take it from."""
    from harness.report.power import power_table
    from harness.report.summary import summary_table

    recs = []
    for s in range(3):
        recs += [candidate("baseline", s, 1e-3, 0.9, baseline_counts(s)),
                 candidate("baseline", s, 1e-2, 0.1, better_counts(s)),      # worse on validation
                 candidate("better", s, 1e-3, 0.9, better_counts(s)),
                 candidate("better", s, 1e-2, 0.1, baseline_counts(s))]
    for r in recs:
        records.write_record(tmp_path, r)
    chosen, _ = choose_tuned(recs)
    want = summary_table(chosen, "baseline", ["baseline", "better"]).set_index("variant").loc["better", "delta"]
    assert want > 0
    assert power_table(tmp_path, 5).set_index("variant").loc["better", "delta"] == pytest.approx(want)
