"""The harness end to end: the smoke sweep, resume after a kill, failed and diverged runs,
determinism, and the command line's errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_sweep

import variants
from harness.cli import main
from harness.data import DataSpec, load_dataset
from harness.scheduling.one_run import run_one
from harness.spec.protocol import Measure, Protocol, RunSpec
from harness.spec.sweep import load_sweep
from harness.store import sweep_plan
from harness.store.layout import Layout
from harness.store.records import load_records

ROOT = Path(__file__).resolve().parent.parent
SMOKE_COLUMNS = ["variant", "seed", "status", "dice", "iou", "dice_global", "params", "macs",
                 "infer_img_s", "train_img_s"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    assert main(["run", "smoke", "--out", str(out), "--no-progress"]) == 0
    return out


def test_smoke_sweep_end_to_end(smoke):
    sweep = load_sweep("smoke")
    df = pd.read_csv(smoke / "runs.csv")
    for c in SMOKE_COLUMNS:
        assert c in df.columns
    n_runs = len(sweep.variants) * len(sweep.seeds)
    assert df.key.nunique() == n_runs == len(list((smoke / "runs").glob("*.json")))
    assert (df.status == "ok").all(), df[df.status != "ok"].error.tolist()
    assert df.dice.between(0, 1).all() and (df.params > 0).all() and (df.macs > 0).all()
    assert (df.infer_img_s > 0).all() and (df.train_img_s > 0).all()
    # the deep-supervision variant has its accurate form and every pruned head as rows
    ds_rows = df[df.variant == "unetpp-ds"]
    assert sorted(ds_rows.form.unique()) == ["L1", "L2", "mean"]
    macs = ds_rows.groupby("form").macs.first()
    assert macs["L1"] < macs["L2"] <= macs["mean"]
    # the crop variant is scored on the same test pixels as the baseline
    recs = {(r["variant"], r["seed"]): r for r in load_records(smoke)}
    base, crop = recs[("baseline", 0)], recs[("skip=crop", 0)]
    assert base["forms"][0]["counts"]["images"] == crop["forms"][0]["counts"]["images"]
    pixels = lambda r: np.asarray(r["forms"][0]["counts"]["values"])[..., :].sum(axis=(1, 2))  # noqa: E731
    assert (pixels(base) == pixels(crop)).all()
    # the split is the data seed's, written into each record, the same for every run
    splits = {json.dumps(r["data"]["split_ids"], sort_keys=True) for r in recs.values()}
    assert len(splits) == 1
    assert all(r["env"]["threads"] == 2 and r["env"]["torch"] for r in recs.values())


def test_the_env_of_every_record_names_the_packages_behind_its_numbers(smoke):
    from importlib import metadata
    for rec in load_records(smoke):
        env = rec["env"]
        assert {k: env[k] for k in ("scipy", "monai", "scikit-image", "pandas", "thop")} == \
            {k: metadata.version(k) for k in ("scipy", "monai", "scikit-image", "pandas", "thop")}
        assert env["cuda"] is None if env["device"] == "cpu" else env["cuda"]["runtime"] == torch.version.cuda


def test_a_rerun_tries_each_distinct_model_still_to_do_once_on_meta(smoke, tmp_path, monkeypatch):
    """measure.size is tried on meta for runs still to do only: none for a recorded sweep,
    one per network (not per seed) for the rest."""
    import shutil

    from harness.scheduling import one_run, planning
    out = tmp_path / "smoke"
    shutil.copytree(smoke, out)
    tried = []
    real = planning.count_macs
    monkeypatch.setattr(planning, "count_macs", lambda spec, h, w: tried.append(spec) or real(spec, h, w))
    assert main(["run", "smoke", "--out", str(out), "--no-progress"]) == 0
    assert tried == []
    recs = [r for r in load_records(out) if r["variant"] == "up=bilinear"]
    assert len(recs) == 2  # both seeds
    for r in recs:
        (out / "runs" / f"{r['key']}.json").unlink()
    monkeypatch.setattr(one_run, "run_one", lambda rs, *a, **k: {**r, "key": rs.key, "seed": rs.seed})
    assert main(["run", "smoke", "--out", str(out), "--no-progress"]) == 0
    assert [s.name for s in tried] == [variants.parse(recs[0]["spec"]["arch"]).name]


def test_reused_records_of_another_environment_are_said(smoke, tmp_path, caplog):
    """A version is not part of the run key: such records are reused, with one line."""
    import shutil

    from harness.store import records
    out = tmp_path / "smoke"
    shutil.copytree(smoke, out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    for p in sorted((out / "runs").glob("*.json"))[:2]:
        rec = records.read_record(p)
        rec["env"]["torch"] = "2.0.0"
        records.write_record(out, rec)
    assert main(["run", "smoke", "--out", str(out), "--no-progress"]) == 0
    warned = [r.getMessage() for r in caplog.records if "another environment" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("2 recorded run(s)")
    assert f"torch 2.0.0 (now {torch.__version__})" in warned[0]
    assert {p.name for p in (out / "runs").glob("*.json")} == set(before)  # reused, not run again


def test_resume_runs_nothing_twice(smoke, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in (smoke / "runs").glob("*.json")}
    assert main(["run", "smoke", "--out", str(smoke), "--no-progress"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (smoke / "runs").glob("*.json")}
    assert before == after
    assert "already recorded" in capsys.readouterr().err


def _tiny_data():
    return DataSpec(name="membranes", n_images=12, size=32, seed=1)


def _tiny_run(arch, seed=0, **protocol):
    p = dict(steps=4, batch_size=2, patch=32, eval_every=2)
    p.update(protocol)
    return RunSpec(arch=arch.to_dict(), data=_tiny_data().to_dict(), protocol=Protocol(**p),
                   measure=Measure(size=(32, 32), batch_size=2, warmup=0, min_run_time=0.01,
                                   keep_predictions=1, device="cpu"), seed=seed)


def test_same_spec_and_seed_give_identical_metrics():
    data = load_dataset(_tiny_data())
    arch = variants.ArchSpec(width=4, depth=2, in_channels=1)
    a, b = (run_one(_tiny_run(arch), data) for _ in range(2))
    assert a["status"] == b["status"] == "ok"
    assert a["forms"][0]["counts"] == b["forms"][0]["counts"]
    assert a["train"]["history"][-1]["loss"] == b["train"]["history"][-1]["loss"]
    c = run_one(_tiny_run(arch, seed=1), data)  # another seed: other weights and patches
    losses = lambda r: [e["loss"] for e in r["train"]["history"]]  # noqa: E731
    assert losses(c) != losses(a)


def test_diverged_and_failed_runs_are_recorded_while_the_sweep_goes_on(tmp_path):
    arch = variants.ArchSpec(width=4, depth=2, in_channels=1)
    model = variants.build(arch)
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "nan.pth")
    sweep = tmp_path / "div.toml"
    unet = {"kind": "unet", "width": 4, "depth": 2}
    tiny_sweep(sweep, {"measure": None}, name="div", seeds=1, data={"name": "membranes", "seed": 1},
               protocol={"steps": 4}, measure={"size": [32, 32], "batch_size": 2, "min_run_time": 0.01},
               variants={"one_factor": None, "explicit": {"nan-weights": {**unet, "weights": tmp_path / "nan.pth"},
                                                          "missing": {**unet, "weights": tmp_path / "nope.pth"}}})
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--out", str(out), "--no-progress"]) == 0
    df = pd.read_csv(out / "runs.csv").set_index("variant")
    assert df.loc["baseline", "status"] == "ok"
    assert df.loc["nan-weights", "status"] == "diverged" and "loss became nan" in df.loc["nan-weights", "error"]
    assert df.loc["missing", "status"] == "failed" and "nope.pth" in df.loc["missing", "error"]
    # --retry-failed reruns only the failed run
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert main(["run", str(sweep), "--out", str(out), "--no-progress", "--retry-failed"]) == 0
    changed = [n for n, t in mtimes.items() if (out / "runs" / n).stat().st_mtime_ns != t]
    failed_key = df.loc["missing", "key"]
    assert changed == [f"{failed_key}.json"]


def test_resume_after_a_kill(tmp_path):
    out, path = tmp_path / "killed", tmp_path / "nine.toml"
    tiny_sweep(path, seeds=3, protocol={"steps": 20, "eval_every": 10},
               variants={"one_factor": {"up": ["bilinear"], "act": ["relu6"]}})  # 9 runs of about a second
    sweep = load_sweep(str(path))
    n_runs = len(sweep.variants) * len(sweep.seeds)
    cmd = [sys.executable, "-m", "harness", "run", str(path), "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "runs").glob("*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = list((out / "runs").glob("*.json"))
    assert 2 <= len(done) < n_runs, "the kill should land in the middle of the sweep"
    for p in done:  # every record that exists is whole
        json.loads(p.read_text())
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    records = load_records(out)
    assert len(records) == n_runs and all(rec["status"] == "ok" for rec in records)
    assert not list((out / "runs").glob(".*.tmp"))


@pytest.mark.parametrize("args,needle", [
    (["run", "no-such-sweep"], "no-such-sweep"),
    (["run", "smoke", "--data", "/no/such/folder"], "/no/such/folder"),
    (["run", "smoke", "--variants", "unet-gelu"], "gelu"),
    (["run", "smoke", "--variants", "up=bilinear,up=bilinear"], "--variants: up=bilinear is given twice"),
    (["run", "smoke", "--workers", "0"], "run: argument --workers: expected a positive size, got 0"),
    (["run", "smoke", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_run_user_errors_are_one_line_and_write_nothing(fails_cleanly, tmp_path, args, needle):
    out = tmp_path / "out"
    fails_cleanly(*args, "--out", out, "--no-progress", names=[needle], untouched=[out])


@pytest.mark.parametrize("table,needle", [
    ('[protocol]\noptimiser = "adam"', "protocol.optimiser: unknown key"),
    ('[protocol]\nsteps = 3.0', "protocol.steps: expected a positive integer"),
    ('[measure]\nthreads = "2"', "measure.threads: expected a positive integer"),
    ('[protocol]\nloss = "focal"', "protocol.loss: expected bce | ce | dice"),
    ('colour = "red"', "colour: unknown key"),
    ('seeds = [0, 0]', "seeds: 0 is given twice"),
    ('seeds = [1, 2, 1]', "seeds: 1 is given twice"),
    ('seeds = [-1, 0]', "seeds: expected a count from 1 to 10,000 or a list of as many integers >= 0"),
])
def test_bad_sweep_file_names_the_file_and_key(fails_cleanly, tmp_path, table, needle):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'{table}\n[data]\nname = "membranes"\nn_images = 12\nsize = 32\n[variants]\nbaseline = "unet"\n')
    fails_cleanly("run", bad, "--out", tmp_path / "o", names=[needle, "bad.toml"], untouched=[tmp_path / "o"])


def test_report_builds_from_the_smoke_records(smoke, tmp_path):
    from PIL import Image

    from harness.report import build_report

    out = build_report(smoke, tmp_path / "report")
    for name in ["index.md", "table.md", "table.tex", "table.csv", "runs.csv"]:
        assert (out / name).is_file(), name
    for fig in ["accuracy_cost", "ablation", "curves", "qualitative", "deep_supervision"]:
        assert (out / f"{fig}.pdf").read_bytes().startswith(b"%PDF")
        with Image.open(out / f"{fig}.png") as im:
            assert im.size[0] > 300
    table = (out / "table.md").read_text()
    for v in load_sweep("smoke").variants:
        assert v.label in table
    tidy = pd.read_csv(out / "runs.csv")
    assert len(tidy) == len(pd.read_csv(smoke / "runs.csv"))


def test_images_smaller_than_the_models_minimum_are_refused(fails_cleanly, tmp_path):
    from PIL import Image

    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((3, 5), 100, np.uint8)).save(tmp_path / "data" / "images" / f"im{i}.png")
        Image.fromarray(np.eye(3, 5, dtype=np.uint8) * 255).save(tmp_path / "data" / "masks" / f"im{i}.png")
    out = tmp_path / "out"
    fails_cleanly("run", "smoke", "--data", tmp_path / "data", "--out", out, "--no-progress",
                  names=["im0.png", "3x5"], untouched=[out, tmp_path / "data"])


def test_shipped_sweeps_load_and_the_cpu_preset_covers_every_axis():
    from harness.spec.sweep import preset_names

    assert {"smoke", "cpu", "gpu"} <= set(preset_names())
    for name in preset_names():
        assert load_sweep(name).name == name
    cpu = load_sweep("cpu")
    assert len(cpu.seeds) == 3 and cpu.datasets[0].spec.name == "membranes" and cpu.measure.device == "auto"
    factors = {v.factor for v in cpu.variants}
    assert {"baseline", "act", "up", "skip", "norm", "encoder"} <= factors
    specs = {v.label: v.spec for v in cpu.variants}
    assert specs["unetpp-ds"].deep_supervision and specs["unetpp-ds"].forms == ["mean", "L1", "L2", "L3", "L4"]
    assert {s.arch for s in specs.values() if isinstance(s, variants.SmpSpec)} == {"unet", "unetpp"}
    for v in cpu.variants:  # one factor at a time means one factor
        if v.factor not in (None, "baseline"):
            diff = {k for k, x in v.spec.to_dict().items() if cpu.baseline.spec.to_dict()[k] != x}
            assert diff == {v.factor}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_run_with_bf16_and_cuda_event_timing():
    data = load_dataset(_tiny_data())
    arch = variants.ArchSpec(topology="unetpp", deep_supervision=True, width=4, depth=2, in_channels=1)
    rs = _tiny_run(arch, amp="bf16")
    rs = RunSpec(arch=rs.arch, data=rs.data, protocol=rs.protocol,
                 measure=Measure(size=(32, 32), batch_size=2, device="cuda", repeats=3), seed=0)
    rec = run_one(rs, data)
    assert rec["status"] == "ok", rec["error"]
    assert rec["env"]["device"] == "cuda" and rec["env"]["dtype"] == "bfloat16"
    assert rec["train"]["peak_mem_mb"] > 0
    assert all(f["cost"]["peak_mem_mb"] > 0 and f["cost"]["infer_img_s"] > 0 for f in rec["forms"])


def test_two_variants_with_one_spec_are_refused(fails_cleanly, tmp_path):
    sweep = tmp_path / "dup.toml"
    sweep.write_text('[data]\nname = "membranes"\nn_images = 12\nsize = 32\n'
                     '[variants]\nbaseline = "unet-w4-d2"\n[variants.explicit]\nagain = "unet-w4-d2"\n')
    fails_cleanly("run", sweep, "--out", tmp_path / "o", names=["'baseline' and 'again' have the same spec"],
                  untouched=[tmp_path / "o"])


def test_override_returns_a_new_sweep_and_leaves_the_loaded_one():
    import dataclasses

    from harness.spec.sweep import override

    sweep = load_sweep("smoke")
    new = override(sweep, seeds=1, steps=2, variant_labels=["skip=crop"])
    assert new.seeds == (0,) and new.protocol.steps == 2 and new.protocol.eval_every == 2
    assert [v.label for v in new.variants] == ["baseline", "skip=crop"]
    assert sweep == load_sweep("smoke")  # unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        sweep.seeds = (0,)


def test_a_missing_run_is_reported_with_the_command_that_completes_it(smoke, tmp_path):
    """Delete one record of a finished sweep: its row says "1/2 ok, 1 missing", the front
    page lists the run and the command; running that command does only that run."""
    import shlex
    import shutil

    from harness.report import build_report

    out = Path(shutil.copytree(smoke, tmp_path / "results"))
    plan = sweep_plan.read_plan(out)
    assert plan.families == {v.label: v.family for v in load_sweep("smoke").variants}
    gone = next(r for r in plan.runs if r.variant == "up=bilinear" and r.seed == 1)
    Layout(out).record(gone.key).unlink()
    plan = sweep_plan.read_plan(out)  # the plan still names the run
    assert gone in plan.runs

    report = build_report(out, tmp_path / "report", figures=False)
    assert "| up=bilinear | mean | up | one-factor | 1/2 ok, 1 missing |" in (report / "table.md").read_text()
    index = (report / "index.md").read_text()
    assert f"`up=bilinear` seed 1 (`{gone.key}`)" in index
    command = plan.command.replace(str(smoke), str(out))
    assert shlex.split(command)[:3] == ["unet-ablate", "run", "smoke"]

    before = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert main(shlex.split(command)[1:] + ["--no-progress"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert set(after) - set(before) == {f"{gone.key}.json"}
    assert all(after[name] == t for name, t in before.items())
    index = (build_report(out, tmp_path / "report", figures=False) / "index.md").read_text()
    assert "## Missing runs" not in index and "1 missing" not in index


def _folder(root: Path, n: int, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        Image.fromarray((rng.random((16, 16)) < 0.4).astype(np.uint8) * 255).save(root / "masks" / f"im{i}.png")
    return root


def test_results_are_never_reused_when_the_data_changed(tmp_path, caplog):
    """Run on a folder, rewrite one mask, run the same command again: the run key changes
    with the data, one line says so before anything runs, the new run is done, and the
    report and runs.csv take the new run only."""
    import logging
    import os

    from harness.report import build_report

    data, out = _folder(tmp_path / "data", 6), tmp_path / "out"
    args = ["run", "smoke", "--data", str(data), "--variants", "baseline", "--seeds", "1",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    first = {p.name for p in (out / "runs").glob("*.json")}
    assert len(first) == 1

    os.utime(data / "masks" / "im3.png", ns=(1, 1))  # touched or copied: the same data
    caplog.clear()
    assert main(args) == 0
    assert {p.name for p in (out / "runs").glob("*.json")} == first
    assert "not reused" not in caplog.text

    mask = np.zeros((16, 16), np.uint8)
    mask[4:9, 4:9] = 255
    from PIL import Image
    Image.fromarray(mask).save(data / "masks" / "im3.png")  # the data changed
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unet_ablate"):
        assert main(args) == 0
    lines = [r.getMessage() for r in caplog.records if "not reused" in r.getMessage()]
    assert len(lines) == 1 and f"the data in {data}" in lines[0] and "changed" in lines[0]
    now = {p.name for p in (out / "runs").glob("*.json")}
    assert len(now) == 2 and first < now
    assert pd.read_csv(out / "runs.csv")["key"].nunique() == 1  # only this sweep's run
    rep = build_report(out, tmp_path / "rep", figures=False)
    assert "1 record(s)" in (rep / "index.md").read_text()       # the old one, left out


def test_when_only_the_folds_changed_the_reason_is_the_split(tmp_path, caplog):
    import logging

    data, out = _folder(tmp_path / "data", 6), tmp_path / "out"
    args = ["run", "smoke", "--data", str(data), "--variants", "baseline", "--seeds", "1",
            "--out", str(out), "--no-progress"]
    assert main([*args, "--folds", "2"]) == 0
    with caplog.at_level(logging.WARNING, logger="unet_ablate"):
        assert main([*args, "--folds", "3"]) == 0
    lines = [r.getMessage() for r in caplog.records if "not reused" in r.getMessage()]
    assert len(lines) == 1 and "the split changed" in lines[0] and "data in" not in lines[0]


@pytest.mark.parametrize("metric,figures", [("dice_nn", False), ("dice_c0", False), ("cldice", False),
                                            ("rand_f", False), ("vi", True), ("hd95", False), ("nsd", True)])
def test_the_smoke_report_builds_with_each_metric_family_as_headline(smoke, tmp_path, metric, figures):
    """Counts (nnU-Net convention, per class), thin structures, topology, boundaries (the
    figures drawn for one lower-is-better and one higher-is-better whole-map metric)."""
    from harness.metrics import metric as metric_info

    flags = [] if figures else ["--no-figures"]
    assert main(["report", str(smoke), "--out", str(tmp_path / metric), "--metric", metric, *flags]) == 0
    assert (tmp_path / metric / "ablation.png").is_file() == figures
    info = metric_info(metric)
    table = pd.read_csv(tmp_path / metric / "table.csv")
    assert (table["metric"] == metric).all() and np.isfinite(table[f"{metric}_mean"]).all()
    assert f"Δ{info.label} ({'higher' if info.higher_is_better else 'lower'} is better)" in \
        (tmp_path / metric / "table.md").read_text()


def test_records_hold_every_image_metric_per_test_image(smoke):
    rec = load_records(smoke)[0]
    f = rec["forms"][0]
    values = f["image_metrics"]["values"]
    assert f["image_metrics"]["thin_class"] == 0  # the membranes of the built-in data
    for name in ("hd95", "nsd", "hd95_c1", "nsd_c1", "cldice", "rand_f", "vi"):
        assert len(values[name]) == len(f["counts"]["images"])
        assert f["metrics"][name] == pytest.approx(np.nanmean(values[name]))
    for name in ("dice_nn", "dice_thin", "dice_c0", "dice_c1", "iou_c0"):
        assert 0 <= f["metrics"][name] <= 1
    assert f["metrics"]["dice_c1"] == pytest.approx(f["metrics"]["dice"])


def test_a_sweep_names_its_report_metric(tmp_path, fails_cleanly):
    text = (ROOT / "harness" / "sweeps" / "smoke.toml").read_text()
    (tmp_path / "vi.toml").write_text(text + '\n[report]\nmetric = "vi"\n')
    assert load_sweep(str(tmp_path / "vi.toml")).report.metric == "vi"
    (tmp_path / "bad.toml").write_text(text + '\n[report]\nmetric = "vl"\n')
    fails_cleanly("run", tmp_path / "bad.toml", "--out", tmp_path / "o",
                  names=["bad.toml", "metric 'vl': expected one of"], untouched=[tmp_path / "o"])
    (tmp_path / "bad2.toml").write_text(text + '\n[report]\nheadline = "vi"\n')
    fails_cleanly("run", tmp_path / "bad2.toml", "--out", tmp_path / "o",
                  names=["report.headline: unknown key"], untouched=[tmp_path / "o"])
