"""Recipe axes: the training protocol's fields ablated like the network's axes
(``"protocol.<field>"`` in one_factor, grid, factorial and explicit variants), the seeds'
named recipes, and a report that states each variant's recipe and crosses recipe with network."""
import dataclasses

import pandas as pd
import pytest
from conftest import tiny_sweep

import variants
from harness.cli import main
from harness.data import DataSpec, load_dataset
from harness.report import build_report
from harness.scheduling.one_run import run_one
from harness.scheduling.planning import load_all, plan
from harness.spec.protocol import Measure, Protocol, RunSpec
from harness.spec.recipes import RECIPES
from harness.spec.sweep import load_sweep
from harness.store.records import load_records

ONE_FACTOR = {"act": ["relu6"], "protocol.optimizer": ["rmsprop"], "protocol.loss": ["dice"]}
FACTORIAL = {"norm": ["bn", "nobn"], "protocol.lr": [1e-3, 3e-4]}


def sweep_of(tmp_path, name="r.toml", **variants_table):
    path = tmp_path / name
    tiny_sweep(path, protocol={"optimizer": "adam", "lr": 1e-3, "loss": "bce+dice"},
               variants={"one_factor": None, **variants_table})
    return load_sweep(str(path))


def test_recipe_axes_are_labelled_like_network_axes_and_run_the_baselines_network(tmp_path):
    sweep = sweep_of(tmp_path, one_factor=ONE_FACTOR)
    by_label = {v.label: v for v in sweep.variants}
    assert list(by_label) == ["baseline", "act=relu6", "optimizer=rmsprop", "loss=dice"]
    base = by_label["baseline"]
    for label, field, value in [("optimizer=rmsprop", "optimizer", "rmsprop"), ("loss=dice", "loss", "dice")]:
        v = by_label[label]
        assert v.spec == base.spec and v.recipe == ((field, value),) and v.factor == field
        assert v.family == "one-factor" and getattr(v.protocol(sweep.protocol), field) == value
    assert by_label["act=relu6"].recipe == () and by_label["act=relu6"].protocol(sweep.protocol) == sweep.protocol


def test_a_recipe_level_equal_to_the_protocols_is_no_variant(tmp_path):
    sweep = sweep_of(tmp_path, one_factor={"protocol.optimizer": ["adam", "sgd"], "protocol.lr": [0.001]})
    assert [v.label for v in sweep.variants] == ["baseline", "optimizer=sgd"]


def test_each_run_key_covers_its_whole_protocol_and_network_runs_keep_their_keys(tmp_path):
    plain = sweep_of(tmp_path, "plain.toml", one_factor={"act": ["relu6"]})
    mixed = sweep_of(tmp_path, one_factor=ONE_FACTOR)
    runs = {(r.labels.variant, r.spec.seed): r for r in plan(mixed, load_all(mixed))}
    before = {(r.labels.variant, r.spec.seed): r.key for r in plan(plain, load_all(plain))}
    assert all(runs[k].key == key for k, key in before.items())  # records made before keep their keys
    assert runs[("optimizer=rmsprop", 0)].spec.protocol.optimizer == "rmsprop"
    assert runs[("loss=dice", 0)].spec.protocol.loss == "dice"
    assert len({r.key for r in runs.values()}) == len(runs)


def test_a_factorial_of_network_and_recipe_plans_four_points_named_by_field(tmp_path):
    sweep = sweep_of(tmp_path, factorial=FACTORIAL)
    design, labels = sweep.design
    assert design.axes == ("norm", "lr") and labels == ("baseline", "norm=nobn", "lr=0.0003", "norm=nobn,lr=0.0003")
    point = {v.label: v for v in sweep.variants}["norm=nobn,lr=0.0003"]
    assert point.spec.norm == "nobn" and point.recipe == (("lr", 0.0003),)


def test_a_grid_crosses_recipe_fields(tmp_path):
    sweep = sweep_of(tmp_path, grid={"protocol.optimizer": ["adam", "sgd"],
                                     "protocol.schedule": ["cosine", "constant"]})
    assert [v.label for v in sweep.variants] == ["baseline", "schedule=constant", "optimizer=sgd",
                                                 "optimizer=sgd,schedule=constant"]


@pytest.mark.parametrize("table,needle", [
    ({"one_factor": {"protocol.colour": [1]}}, "protocol.colour: not a protocol field \\(expected one of steps"),
    ({"one_factor": {"protocol.lr": ["x"]}}, "variants.one_factor.protocol.lr: protocol.lr: expected a number > 0"),
    ({"one_factor": {"protocol.lr": [-0.1]}}, "protocol.lr: expected a number > 0"),
    ({"one_factor": {"protocol.optimizer": ["adamm"]}}, "protocol.optimizer: expected adam | adamw"),
    ({"one_factor": {"protocol.loss": ["focal"]}}, "protocol.loss: expected bce | ce | dice"),
    ({"one_factor": {"protocol.checkpoint_every": [5]}}, "protocol.checkpoint_every cannot differ between variants"),
    ({"one_factor": {"colour": ["red"]}}, "variants.one_factor.colour: not an axis"),
    ({"factorial": {"protocol.lr": [3e-4, 1e-3], "act": ["relu", "relu6"]}},
     "variants.factorial.protocol.lr: the first level must be the baseline's \\(0.001\\)"),
    ({"factorial": {"norm": ["bn", "batch"], "act": ["relu", "relu6"]}},
     "variants.factorial.norm: 'batch' is 'bn' \\(one level given twice"),
    ({"factorial": {"act": ["relu", "relu6"], "protocol.lr": [1e-3, 0.001]}},
     "variants.factorial.protocol.lr: expected two levels"),
    ({"explicit": {"x": {"arch": "unet-w4-d2", "recipe": "seed009"}}}, "variants.explicit.x: recipe 'seed009': "
                                                                       "expected one of seed001"),
    ({"explicit": {"x": {"arch": "unet-w4-d2", "colour": 1}}}, "variants.explicit.x.colour: unknown key"),
])
def test_every_bad_recipe_is_one_line_with_exit_2_and_nothing_written(tmp_path, fails_cleanly, table, needle):
    path = tmp_path / "bad.toml"
    tiny_sweep(path, variants={"one_factor": None, **table})
    out = tmp_path / "out"
    fails_cleanly("run", path, "--out", out, names=["bad.toml"], untouched=[out])
    with pytest.raises(ValueError, match=needle):
        load_sweep(str(path))


def test_an_explicit_variant_takes_a_seeds_whole_recipe_and_fields_over_it(tmp_path):
    sweep = sweep_of(tmp_path, explicit={"seed001-recipe": {"arch": "unet-w4-d2", "recipe": "seed001"},
                                         "faster": {"recipe": "seed004", "protocol": {"lr": 3e-4}}})
    by_label = {v.label: v for v in sweep.variants}
    p = by_label["seed001-recipe"].protocol(sweep.protocol)
    assert (p.optimizer, p.lr, p.weight_decay, p.momentum, p.loss, p.select) == \
        ("rmsprop", 1e-5, 1e-8, 0.9, "bce", "train_loss")
    q = by_label["faster"].protocol(sweep.protocol)
    assert (q.optimizer, q.lr, q.loss, q.batch_size) == ("adam", 3e-4, "bce", 4)
    assert by_label["faster"].spec == by_label["baseline"].spec  # no arch: the baseline's network


def test_list_names_the_seed_recipes(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in RECIPES) and "protocol.<field>" in out
    assert "RMSprop(lr=1e-5" in out and "epochs become the sweep's steps" in out


def test_selection_on_the_lowest_training_loss_keeps_the_weights_of_the_lowest_logged_loss():
    """Seed 001's rule: the score of each validation point is the mean training loss since
    the last one, and the lowest is kept."""
    data = load_dataset(DataSpec("membranes", n_images=12, size=32, seed=0))
    arch = variants.parse("unet-w4-d2").replace(in_channels=data.in_channels, classes=1)
    protocol = Protocol(steps=6, batch_size=2, patch=32, eval_every=2, select="train_loss", schedule="constant")
    rs = RunSpec(arch=arch.to_dict(), data=data.spec.to_dict(), protocol=protocol,
                 measure=Measure(size=(32, 32), batch_size=2, warmup=0, min_run_time=0.01, repeats=1, device="cpu"),
                 seed=0)
    rec = run_one(rs, data)
    train = rec["train"]
    losses = [h["loss"] for h in train["history"]]
    assert train["selected_on"] == "train_loss" and len(losses) == 3
    assert train["best_val_score"] == min(losses)
    assert train["best_step"] == train["history"][losses.index(min(losses))]["step"]


@pytest.fixture(scope="module")
def recipe_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    path = root / "r.toml"
    tiny_sweep(path, seeds=3, protocol={"optimizer": "adam", "lr": 1e-3, "loss": "bce+dice"},
               variants={"one_factor": {k: v for k, v in ONE_FACTOR.items() if k != "act"}, "factorial": FACTORIAL})
    assert main(["run", str(path), "--out", str(root / "out"), "--no-progress", "-q"]) == 0
    return root / "out"


def test_records_show_the_changed_optimizer_and_loss(recipe_results):
    recs = {(r["variant"], r["seed"]): r for r in load_records(recipe_results)}
    assert recs[("optimizer=rmsprop", 0)]["spec"]["protocol"]["optimizer"] == "rmsprop"
    assert recs[("loss=dice", 1)]["spec"]["protocol"]["loss"] == "dice"
    assert recs[("lr=0.0003", 2)]["spec"]["protocol"]["lr"] == 3e-4
    assert recs[("baseline", 0)]["spec"]["arch"] == recs[("optimizer=rmsprop", 0)]["spec"]["arch"]


def test_the_report_has_recipe_rows_with_verdicts_effects_and_the_recipes_stated(recipe_results, tmp_path):
    rep = build_report(recipe_results, tmp_path / "rep", figures=False)
    table = pd.read_csv(rep / "table.csv").set_index("variant")
    for label in ("optimizer=rmsprop", "loss=dice", "lr=0.0003", "norm=nobn,lr=0.0003"):
        assert table.loc[label, "verdict"] in ("different", "equivalent", "equivalent (negligible)",
                                               "inconclusive"), label
    assert table.loc["optimizer=rmsprop", "family"] == "one-factor"
    effects = pd.read_csv(rep / "effects.csv")
    assert set(effects["term"]) == {"norm", "lr", "norm:lr"}
    index = (rep / "index.md").read_text()
    assert "recipe variants change it: `loss=dice`: loss dice; `lr=0.0003`: lr 0.0003;" in index
    assert "`optimizer=rmsprop`: optimizer rmsprop" in index
    assert "Every variant is trained under the baseline's protocol but for the recipe it changes" in index


def test_plan_counts_and_estimates_recipe_variants_by_their_own_budget(tmp_path, capsys):
    import json

    path = tmp_path / "p.toml"
    tiny_sweep(path, protocol={"steps": 10}, variants={"one_factor": {"protocol.steps": [40]}})
    assert main(["plan", str(path), "--json"]) == 0
    rows = {r["variant"]: r for r in json.loads(capsys.readouterr().out)["variants"]}
    assert rows["steps=40"]["runs"] == rows["baseline"]["runs"] == 2
    assert rows["steps=40"]["seconds_per_run"] > rows["baseline"]["seconds_per_run"]


def test_a_recipe_of_another_budget_is_in_every_run_of_it(tmp_path):
    sweep = sweep_of(tmp_path, one_factor={"protocol.steps": [5], "protocol.batch_size": [4]})
    runs = plan(sweep, load_all(sweep))
    steps = {r.labels.variant: (r.spec.protocol.steps, r.spec.protocol.batch_size) for r in runs}
    assert steps == {"baseline": (2, 2), "steps=5": (5, 2), "batch_size=4": (2, 4)}


def test_steps_from_the_command_line_hold_for_every_variant(tmp_path, caplog):
    from harness.spec.sweep import override

    sweep = sweep_of(tmp_path, one_factor={"protocol.steps": [40], "protocol.eval_every": [1],
                                           "protocol.optimizer": ["sgd"]})
    short = override(sweep, steps=5)
    by_label = {v.label: v for v in short.variants}
    assert "steps=40" not in by_label and "left out" in caplog.text  # its recipe was only the budget
    assert by_label["eval_every=1"].protocol(short.protocol).steps == 5
    assert by_label["optimizer=sgd"].protocol(short.protocol) == dataclasses.replace(short.protocol, optimizer="sgd")
    keys = [r.key for r in plan(short, load_all(short))]
    assert len(keys) == len(set(keys))


def recorded(variant: str, protocol: dict, baseline=False, selected_on="dice") -> dict:
    return {"variant": variant, "is_baseline": baseline, "spec": {"protocol": protocol},
            "train": {"selected_on": selected_on}}


def test_how_a_run_resumes_is_no_recipe_and_defaults_left_out_of_a_record_are_filled():
    from harness.report.describe import protocol_sentence, protocol_text, selection_text

    base = Protocol(lr=3e-3).to_dict()
    recs = [recorded("baseline", base, True), recorded("act=relu6", {**base, "checkpoint_every": 50})]
    assert protocol_text(recs).startswith("DIFFERS between runs")  # as before: no recipe ablation
    assert protocol_sentence(recs).startswith("Every variant is trained under the same protocol")
    iou = Protocol(select="iou").to_dict()
    recs = [recorded("baseline", iou, True), recorded("select=dice", Protocol(select="dice").to_dict())]
    assert protocol_text(recs).endswith("recipe variants change it: `select=dice`: select dice")
    recs = [recorded("baseline", base, True), recorded("seed001", base, selected_on="train_loss")]
    text = selection_text(recs)
    assert not text.startswith("model selection uses the validation split") and "(1 run)" in text
    assert "best validation Dice (1 run) or lowest mean training loss" in text
