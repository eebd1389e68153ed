"""``unet-ablate plan`` (runs, recorded, the estimate and its arithmetic, power from a pilot)
and ``unet-ablate status`` (counts read from a results folder, live claims, the ETA)."""
import dataclasses
import json
import math
import socket

import pytest
from conftest import tiny_sweep
from test_report import make_results

import variants
from harness.cli import main
from harness.report.power import power_table
from harness.scheduling import claims, forecast
from harness.scheduling.planning import load_all, plan
from harness.scheduling.status import sweep_status
from harness.spec.sweep import load_sweep
from harness.store.layout import Layout
from harness.training.cost import count_macs

# tiny_sweep's 4 runs, of 10 steps (evaluated at 5 and 10), measured at 32x32 on the CPU with
# [measure]'s default timing: tiny_sweep(path, *TINY, **overrides)
TINY = ({"measure": None}, {"protocol": {"steps": 10, "eval_every": 5}, "measure": {"size": [32, 32], "device": "cpu"}})


@pytest.fixture
def sweep_file(tmp_path):
    path = tmp_path / "tiny.toml"
    tiny_sweep(path, *TINY)
    return path


def plan_json(capsys, *args) -> dict:
    assert main(["plan", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_counts_runs_and_recorded_ones(sweep_file, tmp_path, capsys):
    out = tmp_path / "out"
    est = plan_json(capsys, sweep_file, "--out", out)
    assert (est["runs"], est["recorded"], est["todo"]) == (4, 0, 4)
    assert [(v["variant"], v["runs"]) for v in est["variants"]] == [("baseline", 2), ("up=bilinear", 2)]
    assert est["estimated_gpu_hours"] is None and est["rate"]["device"] == "cpu"  # a CPU sweep: no GPU hours
    sweep = load_sweep(str(sweep_file))
    key = plan(sweep, load_all(sweep))[0].key
    Layout(out).runs.mkdir(parents=True)
    Layout(out).record(key).write_text("{}")  # not a record: `run` would do it again, so it is to do
    est = plan_json(capsys, sweep_file, "--out", out)
    assert (est["recorded"], est["todo"]) == (0, 4)
    assert est["estimated_todo_hours"] == pytest.approx(est["estimated_device_hours"])


def test_the_estimate_is_the_stated_arithmetic(sweep_file):
    sweep = load_sweep(str(sweep_file))
    run = plan(sweep, load_all(sweep))[0]
    rate = forecast.Rate(peak_tflops=2.0, mfu=0.5, source="test", device="cuda")
    parts = forecast.run_seconds(run, rate)
    spec = variants.parse(run.spec.arch)
    macs = count_macs(spec, 32, 32)  # patch 32 = the images' size: one MAC count for all
    assert parts["train_s"] == pytest.approx(10 * 2 * 6 * macs / 1e12)
    n_val, n_test = len(run.data.splits["val"]), len(run.data.splits["test"])
    assert parts["validation_s"] == pytest.approx(2 * n_val * 2 * macs / 1e12)  # evaluations at 5 and 10
    assert parts["test_s"] == pytest.approx(n_test * 2 * macs / 1e12)
    m = sweep.measure
    assert parts["measure_s"] == pytest.approx((max(m.warmup, 1) + m.repeats) * (m.batch_size + 1) * 2 * macs / 1e12)
    assert parts["total_s"] == pytest.approx(sum(v for k, v in parts.items() if k != "total_s"))


def test_plan_of_the_gpu_preset_holds_150_runs_and_gpu_hours():
    """The gpu preset's plan, on tiny stand-ins of its data sets (the same runs, fewer pixels)."""
    sweep = load_sweep("gpu")
    small = tuple(dataclasses.replace(d, spec=dataclasses.replace(d.spec, n_images=10, size=64))
                  for d in sweep.datasets)
    sweep = dataclasses.replace(sweep, datasets=small)
    est = forecast.estimate(sweep, plan(sweep, load_all(sweep)), set(), forecast.device_rate(sweep))
    assert est["runs"] == est["todo"] == 150
    assert est["estimated_gpu_hours"] > 0 and est["rate"]["device"] == "cuda"


def test_the_gpu_quick_preset_is_planned_within_ten_gpu_minutes():
    """Every variant of gpu, on all three data sets, 1 seed: at most 10 GPU-minutes at an
    H200's peak and the assumed MFU (and at most 4 for its compute, train to measurement)."""
    sweep, gpu = load_sweep("gpu-quick"), load_sweep("gpu")
    assert [v.label for v in sweep.variants] == [v.label for v in gpu.variants]
    assert [d.label for d in sweep.datasets] == [d.label for d in gpu.datasets]
    assert sweep.protocol.amp == "bf16" and len(sweep.seeds) == 1
    runs = plan(sweep, load_all(sweep))
    est = forecast.estimate(sweep, runs, set(), forecast.device_rate(sweep))
    assert est["runs"] == 30 and est["estimated_gpu_hours"] * 60 <= 10


def test_plan_of_a_sweep_that_is_not_one_is_one_line(fails_cleanly, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[data]\nname = "shapes"\n')
    fails_cleanly("plan", str(bad), names=[str(bad), "[variants]"])


# --------------------------------------------------------------------------- power from a pilot

@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    return make_results(tmp_path_factory.mktemp("pilot"), samples=False)


def test_power_at_the_pilot_seeds_is_the_pilot_report(pilot):
    table = power_table(pilot, seeds=3)
    assert set(table.variant) >= {"better", "same", "ds"}
    same = table[table.pilot_seeds == 3]
    assert (same.mde_planned == same.mde_pilot).all()


def test_more_seeds_lower_the_mde_and_seeds_needed_is_where_a_row_concludes(pilot):
    three, eight = power_table(pilot, seeds=3), power_table(pilot, seeds=8)
    assert (eight.mde_planned <= three.mde_planned + 1e-12).all()
    assert (eight.mde_planned < three.mde_planned).any()
    for row in three.itertuples():
        if math.isnan(row.seeds_needed) or row.seeds_needed <= row.pilot_seeds:
            continue
        n = int(row.seeds_needed)
        at = power_table(pilot, seeds=n).set_index(["variant", "form"]).loc[(row.variant, row.form)]
        before = power_table(pilot, seeds=n - 1).set_index(["variant", "form"]).loc[(row.variant, row.form)]
        assert at.expected != "inconclusive" and before.expected == "inconclusive"


def test_plan_power_prints_the_table(sweep_file, pilot, capsys):
    assert main(["plan", str(sweep_file), "--power", str(pilot)]) == 0
    text = capsys.readouterr().out
    assert "Power from the pilot" in text and "better" in text and "seeds_needed" in text


# --------------------------------------------------------------------------- status

def test_status_counts_every_state_and_gives_an_eta(tmp_path, capsys):
    root = make_results(tmp_path / "r", samples=False)
    keys = {(r["variant"], r["seed"]): r["key"] for r in json_records(root)}
    Layout(root).record(keys["same", 2]).unlink()        # missing
    Layout(root).record(keys["better", 1]).unlink()      # running: a live claim, no record yet
    held = claims.claim(root, keys["better", 1])
    try:
        st = sweep_status(root)
        assert main(["status", str(root), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["variants"] == st["variants"]
        assert main(["status", str(root)]) == 0
        text = capsys.readouterr().out
    finally:
        held.release()
    by = {v["variant"]: v for v in st["variants"]}
    assert {k: by["baseline"][k] for k in ("planned", "ok", "missing")} == {"planned": 3, "ok": 3, "missing": 0}
    assert {k: by["flaky"][k] for k in ("ok", "failed")} == {"ok": 2, "failed": 1}
    assert {k: by["broken"][k] for k in ("failed", "diverged")} == {"failed": 1, "diverged": 1}
    assert (by["same"]["missing"], by["better"]["running"], by["better"]["ok"]) == (1, 1, 2)
    [running] = st["running"]
    assert running["host"] == socket.gethostname() and running["heartbeat_age_s"] < 60
    assert st["eta_s"] == pytest.approx(60.0 * 2)  # records take 60 s each; 2 runs left, 1 runner
    assert "running: better seed 1" in text and "ETA: 2.0 min" in text
    assert sweep_status(root)["totals"]["running"] == 0  # released: back to missing


def json_records(root):
    return [json.loads(p.read_text()) for p in sorted(Layout(root).runs.glob("*.json"))]


def test_status_of_a_folder_without_a_plan_is_one_line(fails_cleanly, tmp_path):
    fails_cleanly("status", str(tmp_path), names=[str(tmp_path), "sweep.json"])



def test_with_five_test_images_or_fewer_the_methods_say_p_images_has_a_floor():
    import pandas as pd

    from harness.report.describe import few_images_text

    assert few_images_text(pd.DataFrame({"n_pairs": [0, 12, 30]})) == ""
    text = few_images_text(pd.DataFrame({"n_pairs": [0, 4, 12]}))
    assert "with 4 test images, p_images cannot fall below 2/2^4 = 0.125" in text
    from harness.report.stats import signflip_p
    assert signflip_p([0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.125)  # the floor, reached by 4 equal signs


# --------------------------------------------------------------------------- TensorBoard

def test_run_tensorboard_writes_event_files_tensorboard_reads(sweep_file, tmp_path):
    """`unet-ablate run SWEEP --tensorboard`: one event folder per run, holding the training
    loss, rate and img/s per step and the validation Dice per evaluation."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    assert main(["run", str(sweep_file), "--seeds", "1", "--tensorboard", "--out", str(out), "-q"]) == 0
    runs = sorted(p.relative_to(out / "tensorboard") for p in (out / "tensorboard").glob("*/*/*"))
    from harness.training.monitor import folder_name

    assert [str(r) for r in runs] == ["shapes/baseline/seed0", f"shapes/{folder_name('up=bilinear')}/seed0"]
    events = EventAccumulator(str(out / "tensorboard" / runs[0]))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "train/img_s", "val/dice"} <= set(tags)
    assert [e.step for e in events.Scalars("train/loss")] == [5, 10]  # every 10 steps, and at evaluations
    assert [e.step for e in events.Scalars("val/dice")] == [5, 10]
    sweep_json = json.loads((out / "sweep.json").read_text())
    assert "--tensorboard" in sweep_json["command"]


def test_log_tensorboard_in_a_sweep_and_its_bad_values(tmp_path):
    path = tmp_path / "s.toml"
    tiny_sweep(path, *TINY, log={"tensorboard": True})
    assert load_sweep(str(path)).tensorboard is True
    assert load_sweep("cpu").tensorboard is False
    tiny_sweep(path, *TINY, log={"tensorboard": "yes"})
    with pytest.raises(ValueError, match="log.tensorboard"):
        load_sweep(str(path))
    tiny_sweep(path, *TINY, log={"wandb": True})
    with pytest.raises(ValueError, match="wandb"):
        load_sweep(str(path))


def test_tensorboard_without_its_package_is_one_line(fails_cleanly, sweep_file, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *a, **kw):
        if name == "torch.utils.tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    out = tmp_path / "out"
    fails_cleanly("run", str(sweep_file), "--tensorboard", "--out", str(out),
                  names=["--tensorboard", "unet-ablate[tensorboard]"], untouched=[out])
