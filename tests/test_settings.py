"""``ReportSettings``: the report's settings have one owner. Parsed by the one config rule
from ``[report]`` and from sweep.json, the default margin is the metric's own (written once,
in ``harness.metrics``), the declared margin belongs to the declared headline only."""
import json

import pytest

from harness.metrics import METRICS
from harness.spec.settings import ReportSettings
from harness.spec.sweep import load_sweep
from harness.store import sweep_plan


def test_the_default_margin_is_the_metrics_own():
    for name, info in METRICS.items():
        assert ReportSettings(metric=name).margin == info.margin
    assert ReportSettings().metric == "dice" and ReportSettings().rank_test is True


def test_a_declared_margin_belongs_to_the_declared_headline_only():
    s = ReportSettings(metric="dice", margin=0.02)
    assert s.margin_for("dice") == 0.02
    assert s.margin_for("vi") == METRICS["vi"].margin  # another panel: its own default
    assert s.select == "dice"
    chosen = s.with_headline("hd95")  # `report --metric hd95`: exploratory, the metric's default
    assert (chosen.metric, chosen.margin, chosen.rank_test) == ("hd95", METRICS["hd95"].margin, True)
    assert s.with_headline(None) is s and s.with_headline("dice") is s


@pytest.mark.parametrize("table,needle", [
    ({"margin": 0}, "report.margin: expected a number > 0"),
    ({"margin": -0.01}, "report.margin: expected a number > 0"),
    ({"margin": "0.01"}, "report.margin: expected a number > 0"),
    ({"margin": True}, "report.margin: expected a number > 0"),
    ({"margin": float("nan")}, "report.margin: expected a number > 0"),
    ({"metric": "dcie"}, "report.metric: metric 'dcie'"),
    ({"metric": 3}, "report.metric: expected a text string"),
    ({"rank_test": "no"}, "report.rank_test: expected true or false"),
    ({"headline": "dice"}, "report.headline: unknown key"),
    ([], "report: expected a table"),
])
def test_every_bad_setting_is_one_error_naming_its_key(table, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        ReportSettings.from_table(table)


def test_a_sweep_holds_its_settings_and_selects_on_its_headline(tmp_path):
    text = ('name = "s"\n[data]\nname = "shapes"\n[variants]\nbaseline = "unet-w4-d2"\n'
            '[report]\nmetric = "iou"\nmargin = 0.02\nrank_test = false\n')
    (tmp_path / "s.toml").write_text(text)
    sweep = load_sweep(str(tmp_path / "s.toml"))
    assert sweep.report == ReportSettings("iou", 0.02, False)
    assert sweep.protocol.select == "iou"
    (tmp_path / "t.toml").write_text(text.replace("margin = 0.02", "margin = 0"))
    with pytest.raises(ValueError, match="t.toml: report.margin: expected a number > 0"):
        load_sweep(str(tmp_path / "t.toml"))


def plan_with(report: ReportSettings) -> sweep_plan.SweepPlan:
    return sweep_plan.SweepPlan(name="p", source="test", description="", command="", baseline="b",
                                variants=("b",), families={"b": "baseline"}, seeds=(0,),
                                runs=(sweep_plan.PlanEntry("k0", "b", 0),), report=report)


def test_sweep_json_keeps_the_settings_flat_and_reads_them_back(tmp_path):
    settings = ReportSettings("vi", 0.3, False)
    sweep_plan.write_plan(tmp_path, plan_with(settings))
    d = json.loads((tmp_path / "sweep.json").read_text())
    assert (d["metric"], d["margin"], d["rank_test"]) == ("vi", 0.3, False) and "report" not in d
    assert sweep_plan.read_plan(tmp_path).report == settings


@pytest.mark.parametrize("drop", [("metric", "margin", "rank_test"), ("margin",), ("rank_test",)])
def test_a_plan_written_before_a_setting_reads_as_its_default(tmp_path, drop):
    sweep_plan.write_plan(tmp_path, plan_with(ReportSettings("iou", 0.04, False)))
    path = tmp_path / "sweep.json"
    d = {k: v for k, v in json.loads(path.read_text()).items() if k not in drop}
    path.write_text(json.dumps(d))
    got = sweep_plan.read_plan(tmp_path).report
    expect = ReportSettings(**{k: v for k, v in (("metric", "iou"), ("margin", 0.04), ("rank_test", False))
                               if k not in drop})
    assert got == expect


def test_a_plan_that_wrote_null_for_a_setting_reads_as_its_default(tmp_path):
    """Versions before ReportSettings wrote ``"margin": null`` for the metric's own margin."""
    sweep_plan.write_plan(tmp_path, plan_with(ReportSettings("iou", 0.04, False)))
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "margin": None, "rank_test": None}))
    assert sweep_plan.read_plan(tmp_path).report == ReportSettings("iou", METRICS["iou"].margin, True)


@pytest.mark.parametrize("change,needle", [({"margin": 0}, "report.margin"), ({"margin": "x"}, "report.margin"),
                                           ({"rank_test": "no"}, "report.rank_test"),
                                           ({"metric": "nope"}, "report.metric")])
def test_a_bad_setting_in_sweep_json_names_the_file(tmp_path, change, needle):
    sweep_plan.write_plan(tmp_path, plan_with(ReportSettings()))
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(ValueError, match=f"sweep.json: not a sweep plan .*{needle}"):
        sweep_plan.read_plan(tmp_path)
