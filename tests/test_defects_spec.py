"""Defects of issue 34 in sweeps, sweep.json, records' metrics and the report's words: each a
one-line error up front (exit 2, nothing written), or a plan that keeps what it planned."""
import json

import pytest
from conftest import tiny_sweep

from harness.cli import main
from harness.report import build_report
from harness.spec.sweep import load_sweep
from harness.store import sweep_plan

FACTORIAL = {"one_factor": None, "factorial": {"act": ["relu", "relu6"], "up": ["transpose", "bilinear"]}}


@pytest.mark.parametrize("resolution,needle", [
    ("4", "variants.resolution: expected an integer >= 3, got '4'"),     # 6: was a TypeError traceback
    (True, "variants.resolution: expected an integer >= 3, got True"),   # 21: was accepted
    (2.5, "variants.resolution: expected an integer >= 3, got 2.5"),
    (-1, "variants.resolution: expected an integer >= 3, got -1"),
])
def test_a_resolution_that_is_not_an_integer_is_one_line(tmp_path, fails_cleanly, resolution, needle):
    path = tmp_path / "r.toml"
    tiny_sweep(path, variants={**FACTORIAL, "resolution": resolution})
    fails_cleanly("run", path, "--out", tmp_path / "o", names=[needle], untouched=[tmp_path / "o"])


def test_an_smp_baseline_without_a_grid_is_a_sweep(tmp_path):
    """7: the product over an empty grid runs once; it asked for a family baseline."""
    path = tmp_path / "s.toml"
    tiny_sweep(path, variants={"baseline": "smp-unet-resnet18-dec16.8.8.4.4", "one_factor": None,
                               "explicit": {"plain": "unet-w4-d2"}})
    assert [v.label for v in load_sweep(str(path)).variants] == ["baseline", "plain"]


def factorial_plan(tmp_path) -> dict:
    tiny_sweep(tmp_path / "f.toml", variants=FACTORIAL)
    sweep = load_sweep(str(tmp_path / "f.toml"))
    sweep_plan.write_plan(tmp_path, sweep_plan.SweepPlan(
        name="f", source="t", description="", command="", baseline="baseline",
        variants=tuple(v.label for v in sweep.variants), families={v.label: v.family for v in sweep.variants},
        seeds=(0,), runs=(sweep_plan.PlanEntry("k0", "baseline", 0),), design=sweep_plan.design_dict(sweep.design)))
    return json.loads((tmp_path / "sweep.json").read_text())


@pytest.mark.parametrize("design", [
    5, {}, [], {"axes": ["act", "up"]},
    "coded 7",          # a point coded +-7: a Dice effect of -2.05, silently
    "generator",        # a generator naming an axis that is not there
    "no points",
    "unknown label",
])
def test_a_malformed_design_in_sweep_json_is_one_line_naming_the_file(tmp_path, design):
    """8: it crashed `report`; coded levels of +-7 gave effects 7 times too large."""
    d = factorial_plan(tmp_path)
    good = d["design"]
    if design == "coded 7":
        design = {**good, "points": [{**p, "coded": [7 * c for c in p["coded"]]} for p in good["points"]]}
    elif design == "generator":
        design = {**good, "generators": [[0, 9]]}
    elif design == "no points":
        design = {**good, "points": []}
    elif design == "unknown label":
        design = {**good, "points": [{**good["points"][0], "label": "nobody"}, *good["points"][1:]]}
    (tmp_path / "sweep.json").write_text(json.dumps({**d, "design": design}))
    with pytest.raises(ValueError, match="sweep.json: not a sweep plan .*design"):
        sweep_plan.read_plan(tmp_path)


def test_the_design_sweep_json_holds_reads_back(tmp_path):
    factorial_plan(tmp_path)
    assert sweep_plan.read_plan(tmp_path).design["axes"] == ["act", "up"]


@pytest.mark.parametrize("where,name,needle", [
    ("report", "dice_c99", "report.metric: 'dice_c99': data set 'shapes' has no class 99 for dice"),
    ("report", "hd95_c7", "has no class 7 for hd95 (expected hd95_c1 or hd95_c2 or hd95_c3)"),
    ("protocol", "dice_c9", "protocol.select: 'dice_c9': data set 'shapes' has no class 9"),
    ("report", "dice_c\u0663", "metric 'dice_c\u0663': expected one of"),  # an Arabic-Indic digit
])
def test_a_metric_of_a_class_the_data_lacks_is_one_error_before_any_run(tmp_path, fails_cleanly, where, name,
                                                                        needle):
    """11: it passed the checks and failed every run."""
    path = tmp_path / "c.toml"
    tiny_sweep(path, **({"report": {"metric": name}} if where == "report" else {"protocol": {"select": name}}))
    fails_cleanly("run", path, "--out", tmp_path / "o", names=[needle], untouched=[tmp_path / "o"])


def test_a_part_of_a_sweep_run_into_its_folder_keeps_the_whole_plan(tmp_path, capsys):
    """14: `run SWEEP --variants X` rewrote sweep.json with the subset and no design, and the
    report dropped the other records and the factorial section."""
    path, out = tmp_path / "f.toml", tmp_path / "out"
    tiny_sweep(path, seeds=1, variants=FACTORIAL)
    assert main(["run", str(path), "--out", str(out), "--no-progress", "-q"]) == 0
    whole = (out / "sweep.json").read_bytes()
    assert main(["run", str(path), "--out", str(out), "--no-progress", "-q", "--variants", "act=relu6"]) == 0
    assert (out / "sweep.json").read_bytes() == whole
    rep = build_report(out, tmp_path / "rep", figures=False)
    assert "act=relu6,up=bilinear" in (rep / "table.md").read_text()


def test_a_sweep_file_that_is_not_utf8_is_named(tmp_path, fails_cleanly):
    """19: the error line named no file."""
    path = tmp_path / "latin.toml"
    path.write_bytes(tiny_sweep().encode() + b"# caf\xe9\n")
    fails_cleanly("run", path, "--out", tmp_path / "o", names=["latin.toml: not UTF-8 text"],
                  untouched=[tmp_path / "o"])


def test_a_folder_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    """25: a folder `smoke` in the working directory said "no such sweep file"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()
    assert load_sweep("smoke").name == "smoke"
    (tmp_path / "mine").mkdir()
    with pytest.raises(ValueError, match="mine: a folder, not a sweep file \\(expected a preset"):
        load_sweep("mine")


def test_an_unknown_axis_is_named_once(tmp_path):
    """25: `factorial.colour.colour`."""
    path = tmp_path / "a.toml"
    tiny_sweep(path, variants={"one_factor": None, "factorial": {"colour": ["a", "b"], "up": ["transpose",
                                                                                             "bilinear"]}})
    with pytest.raises(ValueError, match=r"variants\.factorial\.colour: not an axis"):
        load_sweep(str(path))


def test_a_class_metric_the_records_lack_names_the_classes_they_score(tmp_path, fails_cleanly):
    """25: `--metric hd95_c0` on binary data blamed records of schema 2."""
    from test_report import make_results

    root = make_results(tmp_path / "res")
    fails_cleanly("report", root, "--out", tmp_path / "rep", "--metric", "hd95_c0",
                  names=["metric 'hd95_c0': no ok run of these records has it (these records score hd95 of the "
                         "classes hd95_c1 only)"], untouched=[tmp_path / "rep"])


def test_a_log_setting_is_named_as_the_sweep_wrote_it(tmp_path, fails_cleanly, monkeypatch):
    """25: `[log] tensorboard = true` without the package was reported as "--tensorboard needs..."."""
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    path = tmp_path / "log.toml"
    tiny_sweep(path, log={"tensorboard": True})
    fails_cleanly("run", path, "--out", tmp_path / "o", names=["[log] tensorboard = true needs the tensorboard"],
                  untouched=[tmp_path / "o"])
    fails_cleanly("run", path, "--tensorboard", "--out", tmp_path / "o", names=["--tensorboard needs the tensorboard"],
                  untouched=[tmp_path / "o"])


@pytest.mark.parametrize("args", [["--seeds", "99999999999"], ["--seeds", "0"]])
def test_run_with_absurd_seeds_is_one_line(tmp_path, fails_cleanly, args):
    """17: `--seeds 99999999999` and `seeds = 99999999999` made a MemoryError."""
    path = tmp_path / "s.toml"
    tiny_sweep(path)
    fails_cleanly("run", path, *args, "--out", tmp_path / "o", names=["--seeds: expected a count from 1 to 10,000"],
                  untouched=[tmp_path / "o"])
    tiny_sweep(path, seeds=99999999999)
    fails_cleanly("run", path, "--out", tmp_path / "o", names=["seeds: expected a count from 1 to 10,000"],
                  untouched=[tmp_path / "o"])
