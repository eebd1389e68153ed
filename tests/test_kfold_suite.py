"""K-fold cross-validation and suites of data sets: the split rule, runs per fold, pooled
test folds in the report, resume, and a two-data-set suite's report."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_sweep

from harness.cli import main
from harness.data import DataError, DataSpec, load_dataset, make_folds
from harness.metrics import per_image_dice
from harness.report import build_report
from harness.report.summary import summary_table
from harness.spec.sweep import load_sweep, override
from harness.store import records, sweep_plan

ROOT = Path(__file__).resolve().parent.parent
MEM = {"label": "mem", "name": "membranes", "n_images": 10, "size": 32, "split": "kfold", "folds": 2}
SHP = {"label": "shp", "name": "shapes", "n_images": 10, "size": 32}
# a suite of two data sets, one of them 2-fold, 3 seeds of the baseline and two one-factor variants,
# measured on the CPU (tiny_sweep's device: records compared bit for bit)
SUITE = {"name": "suite-test", "seeds": 3, "data": [MEM, SHP], "measure": {"repeats": 1, "keep_predictions": 2},
         "variants": {"one_factor": {"up": ["bilinear"], "act": ["relu6"]}}}


def write_sweep(tmp_path: Path, file: str = "suite.toml", **overrides) -> Path:
    """The suite with ``overrides`` (tiny_sweep's), written to ``tmp_path / file``."""
    path = tmp_path / file
    tiny_sweep(path, SUITE, overrides)
    return path


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    out = root / "results"
    assert main(["run", str(write_sweep(root)), "--out", str(out), "--no-progress", "-q"]) == 0
    return out


# --------------------------------------------------------------------------- the fold rule

@pytest.mark.parametrize("n,k", [(30, 5), (10, 3), (7, 7), (3, 3), (12, 2)])
def test_every_image_is_tested_exactly_once_and_validation_never_touches_the_test_fold(n, k):
    ids = [f"img{i:02d}" for i in range(n)]
    folds = make_folds(ids, seed=4, folds=k, val_fraction=0.15)
    assert len(folds) == k
    tested = Counter(i for f in folds for i in f["test"])
    assert sorted(tested) == list(range(n)) and set(tested.values()) == {1}
    sizes = [len(f["test"]) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for f in folds:
        assert not set(f["val"]) & set(f["test"]) and not set(f["train"]) & set(f["test"])
        assert not set(f["train"]) & set(f["val"])
        assert sorted(f["train"] + f["val"] + f["test"]) == list(range(n))
        assert f["train"] and f["val"]


def test_folds_depend_on_the_data_seed_and_ids_only():
    ids = [f"c{i}" for i in range(20)]
    a = make_folds(ids, 0, 5, 0.15)
    named = lambda folds, order: [{k: sorted(order[i] for i in v) for k, v in f.items()} for f in folds]  # noqa: E731
    shuffled = ids[7:] + ids[:7]                        # the files listed in another order
    assert named(make_folds(shuffled, 0, 5, 0.15), shuffled) == named(a, ids)
    assert make_folds(ids, 0, 5, 0.15) == a            # the same every call (every variant, run seed)
    assert make_folds(ids, 1, 5, 0.15) != a            # another data seed, other folds
    data = load_dataset(DataSpec("membranes", n_images=20, size=32, split="kfold", folds=5))
    assert [v.splits for v in data.fold_views()] == data.folds
    assert [v.fold for v in data.fold_views()] == [0, 1, 2, 3, 4]


def test_thirty_images_in_five_folds_test_each_image_once():
    data = load_dataset(DataSpec("membranes", n_images=30, size=32, split="kfold", folds=5))
    tested = [i for v in data.fold_views() for i in v.subset("test")[2]]
    assert sorted(tested) == sorted(data.ids) and len(tested) == 30


@pytest.mark.parametrize("spec,needle", [
    (dict(folds=1), "data.folds"),
    (dict(folds=11), "data.folds: 11 folds of 10 images"),
])
def test_impossible_fold_specs_are_one_line(spec, needle):
    with pytest.raises(DataError, match=needle):
        DataSpec("membranes", n_images=10, size=32, split="kfold", **spec)


def test_a_fold_without_training_images_is_refused():
    with pytest.raises(DataError, match="fold 0 of 2 leaves 1 image"):
        make_folds(["a", "b", "c"], 0, 2, 0.15)


@pytest.mark.parametrize("folds,needle", [("1", "data.folds"), ("25", "data.folds: 25 folds of 24 images")])
def test_folds_on_the_command_line_that_cannot_work_fail_cleanly(fails_cleanly, tmp_path, folds, needle):
    out = tmp_path / "out"
    fails_cleanly("run", "smoke", "--folds", folds, "--out", out, "--no-progress", names=[needle],
                  untouched=[out])


def test_holdout_keys_are_unchanged_by_the_kfold_fields():
    """A holdout spec's key is the one it had before k-fold existed (results stay reusable)."""
    assert "split" not in DataSpec().to_dict() and DataSpec().key == "b9db30bd8c42"
    assert DataSpec(split="kfold").key != DataSpec().key


# --------------------------------------------------------------------------- sweeps

def test_data_tables_make_a_suite_with_labels(tmp_path, fails_cleanly):
    sweep = load_sweep(str(write_sweep(tmp_path)))
    assert [n.label for n in sweep.datasets] == ["mem", "shp"] and sweep.is_suite
    assert sweep.datasets[0].spec.split == "kfold" and sweep.datasets[1].spec.split == "holdout"
    assert load_sweep("smoke").datasets[0].label == "membranes"        # the default label
    folds = override(sweep, folds=3)
    assert all(n.spec.split == "kfold" and n.spec.folds == 3 for n in folds.datasets)
    for bad, needle in [([MEM, {**SHP, "label": "mem"}], "the label 'mem' is given twice"),
                        ([MEM, {**SHP, "label": "../x"}], "data[1].label"),
                        ([MEM, {**MEM, "label": "m2"}], "data set 'mem' is given twice"),
                        ([{**MEM, "folds": 0}, SHP], "data[0].folds")]:
        fails_cleanly("run", write_sweep(tmp_path, "bad.toml", data=bad), "--out", tmp_path / "o", names=[needle],
                      untouched=[tmp_path / "o"])


# --------------------------------------------------------------------------- runs and the report

def test_kfold_runs_are_one_per_variant_seed_and_fold_with_the_fold_recorded(suite):
    recs = records.load_records(suite)
    mem = [r for r in recs if r["dataset"] == "mem"]
    assert len(mem) == 3 * 3 * 2 and len({r["key"] for r in mem}) == 18
    assert all(r["status"] == "ok" for r in recs)
    by_fold = {}
    for r in mem:
        assert r["fold"] == r["spec"]["fold"] == r["data"]["fold"] and r["data"]["folds"] == 2
        by_fold.setdefault(r["fold"], set()).add(json.dumps(r["data"]["split_ids"], sort_keys=True))
    assert all(len(s) == 1 for s in by_fold.values())  # identical folds for every variant and seed
    tests = [json.loads(next(iter(by_fold[k])))["test"] for k in (0, 1)]
    assert not set(tests[0]) & set(tests[1]) and len(tests[0]) + len(tests[1]) == 10
    shp = [r for r in recs if r["dataset"] == "shp"]
    assert len(shp) == 9 and all(r["fold"] is None and "fold" not in r["spec"] for r in shp)
    csv = pd.read_csv(suite / "runs.csv")
    assert set(csv.dataset) == {"mem", "shp"} and set(csv[csv.dataset == "mem"].fold) == {0, 1}


def test_the_report_pools_the_test_folds(suite):
    recs = [r for r in records.load_records(suite) if r["dataset"] == "mem"]
    plan = sweep_plan.read_plan(suite).for_dataset("mem")
    table = summary_table(recs, "baseline", None, plan).set_index("variant")
    base = table.loc["baseline"]
    assert base["n_planned"] == 6 and base["n_ok"] == 6 and base["n_missing"] == 0
    assert base["n_images"] == 10                     # every image once per seed
    assert table.loc["up=bilinear", "n_pairs"] == 10 and table.loc["up=bilinear", "n_seeds"] == 3
    by_seed = {}
    for r in recs:
        if r["variant"] == "baseline":
            by_seed.setdefault(r["seed"], []).append(per_image_dice(records.counts_array(r["forms"][0])))
    expected = [np.concatenate(v).mean() for v in by_seed.values()]
    assert base["dice_mean"] == pytest.approx(np.mean(expected))
    assert base["dice_std"] == pytest.approx(np.std(expected, ddof=1))


def test_a_two_data_set_suite_builds_its_report_with_heat_map_and_ranks(suite, tmp_path):
    out = build_report(suite, tmp_path / "rep")
    for name in ("suite_heatmap.png", "suite_heatmap.pdf",
                 "suite_table.md", "suite_table.tex", "suite_table.csv", "ranks.csv", "index.md",
                 "mem/index.md", "mem/table.md", "shp/index.md", "shp/table.csv"):
        assert (out / name).is_file(), name
    index = (out / "index.md").read_text()
    ranked = "Friedman test of the ranks" in index or "Mean ranks of" in index  # (the latter: all tied)
    assert ranked and "suite_heatmap.png" in index
    # 2 data sets, 3 variants: CD 2.34 exceeds the largest rank gap, so no diagram, and why
    assert not (out / "cd_diagram.png").exists() and "no pair can be told apart" in index
    assert "[mem/index.md](mem/index.md)" in index and "5-fold" not in index and "2-fold cross-validation" in index
    tidy = pd.read_csv(out / "suite_table.csv")
    assert set(tidy.dataset) == {"mem", "shp"} and set(tidy.variant) == {"baseline", "up=bilinear", "act=relu6"}
    ranks = pd.read_csv(out / "ranks.csv", index_col="dataset")
    assert list(ranks.index) == ["mem", "shp"]
    assert np.allclose(ranks.sum(axis=1), 6)          # ranks 1..3 on each data set
    mean_rank = tidy.groupby("variant").mean_rank.first()
    assert mean_rank.to_dict() == pytest.approx(ranks.mean().to_dict())
    # each data set's table is its own records' alone
    mem_table = pd.read_csv(out / "mem" / "table.csv").set_index("variant")
    assert mem_table.loc["baseline", "n_planned"] == 6
    assert pd.read_csv(out / "shp" / "table.csv").set_index("variant").loc["baseline", "n_planned"] == 3


def test_a_killed_kfold_sweep_resumes_to_the_same_records(tmp_path):
    sweep_file = write_sweep(tmp_path, seeds=2, data=[MEM], variants={"one_factor": {"up": ["bilinear"]}})
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["run", str(sweep_file), "--out", str(whole), "--no-progress", "-q"]) == 0
    cmd = [sys.executable, "-m", "harness", "run", str(sweep_file), "--out", str(killed), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((killed / "runs").glob("*.json"))) < 2:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= len(list((killed / "runs").glob("*.json"))) < 8
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    a, b = records.load_records(whole), records.load_records(killed)
    assert [x["key"] for x in a] == [x["key"] for x in b] and len(a) == 8
    for x, y in zip(a, b):
        assert x["fold"] == y["fold"] and x["forms"][0]["counts"] == y["forms"][0]["counts"]


def test_records_written_before_suites_read_with_a_default_label(suite, tmp_path):
    path = next((suite / "runs").glob("*.json"))
    rec = json.loads(path.read_text())
    del rec["dataset"], rec["fold"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(rec))
    back = records.read_record(old)
    assert back["dataset"] == rec["data"]["name"] and back["fold"] == rec["spec"].get("fold")


# --------------------------------------------------------------------------- suites with holes

def _suite_copy(suite, tmp_path) -> Path:
    out = tmp_path / "results"
    shutil.copytree(suite, out)
    return out


def test_a_data_set_whose_runs_all_diverged_gets_a_report_listing_them(suite, tmp_path):
    """It neither blocks the other data set's report nor hides its failures."""
    out = _suite_copy(suite, tmp_path)
    for path in sorted((out / "runs").glob("*.json")):
        rec = json.loads(path.read_text())
        if rec["dataset"] == "shp":
            rec.update(status="diverged", error="loss became nan at step 3 (fabricated)", forms=[])
            path.write_text(json.dumps(rec))
    rep = build_report(out, tmp_path / "rep", figures=False)
    shp = (rep / "shp" / "index.md").read_text()
    assert "No run of these records finished ok" in shp and shp.count("**diverged**") == 9
    assert (rep / "mem" / "table.md").is_file() and not (rep / "shp" / "table.md").exists()
    index = (rep / "index.md").read_text()
    assert "Not compared (no run finished ok): shp." in index and "[shp/index.md](shp/index.md)" in index


def test_a_planned_data_set_without_records_is_named_as_missing(suite, tmp_path):
    out = _suite_copy(suite, tmp_path)
    for path in sorted((out / "runs").glob("*.json")):
        if json.loads(path.read_text())["dataset"] == "shp":
            path.unlink()
    rep = build_report(out, tmp_path / "rep", figures=False)
    index = (rep / "index.md").read_text()
    assert "planned, without records: shp" in index and "Not compared (planned, without any record): shp." in index
    assert "### shp" in index and "every planned run of this data set is missing" in index


def test_one_folder_under_two_spellings_is_one_data_set(tmp_path, fails_cleanly):
    """data/p8 and x/../data/p8 would train twice and rank as two data sets."""
    (tmp_path / "data" / "p8").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "data" / "p8")
    for other in (f"{tmp_path}/x/../data/p8", f"{tmp_path}/link", f"{tmp_path}/data/p8/"):
        text = (f'[[data]]\nlabel = "a"\nname = "folder"\nroot = "{tmp_path}/data/p8"\n'
                f'[[data]]\nlabel = "b"\nname = "folder"\nroot = "{other}"\n'
                f'[variants]\nbaseline = "unet-w4-d2"\n')
        (tmp_path / "two.toml").write_text(text)
        fails_cleanly("run", tmp_path / "two.toml", "--out", tmp_path / "o",
                      names=["data set 'a' is given twice", "are one folder"], untouched=[tmp_path / "o"])


def test_kfold_samples_cover_the_images_every_fold_shows_and_missing_runs_name_their_fold(suite, tmp_path):
    from harness.store.samples import read_samples

    recs = [r for r in records.load_records(suite) if r["dataset"] == "mem"]
    kept = {i for r in recs for f in r["forms"] for i in f["predictions"]["ids"]}
    folds = {r["fold"] for r in recs}
    assert folds == {0, 1} and kept <= set(read_samples(suite, recs[0]["data"]["key"]))
    out = _suite_copy(suite, tmp_path)
    gone = next(r for r in recs if r["fold"] == 1)
    (out / "runs" / f"{gone['key']}.json").unlink()
    rep = build_report(out, tmp_path / "rep")
    index = (rep / "mem" / "index.md").read_text()
    assert f"`{gone['variant']}` seed {gone['seed']} fold 1 (`{gone['key']}`)" in index
    assert "input and ground truth not shown" not in index


def test_a_variant_with_a_failed_seed_is_ranked_with_it_not_by_its_survivors(suite, tmp_path):
    out = _suite_copy(suite, tmp_path)
    for path in sorted((out / "runs").glob("*.json")):
        rec = json.loads(path.read_text())
        if rec["dataset"] == "mem" and rec["variant"] == "up=bilinear" and rec["seed"] == 0:
            rec.update(status="failed", error="RuntimeError: out of memory (fabricated)", forms=[])
            path.write_text(json.dumps(rec))
    rep = build_report(out, tmp_path / "rep", figures=False)
    ranks = pd.read_csv(rep / "ranks.csv", index_col="dataset")
    assert ranks.loc["mem", "up=bilinear"] == 3  # a seed scoring 0 puts it last on mem
    assert "ranked with that seed scoring 0" in (rep / "index.md").read_text()


def test_a_sweep_that_declines_the_rank_test_gets_mean_ranks_and_no_test(suite, tmp_path):
    """`[report] rank_test = false` (data sets too alike, e.g. from one generator): the
    suite page gives the mean ranks, says why there is no test, and draws no diagram."""
    import json

    root = _suite_copy(suite, tmp_path)
    plan = json.loads((root / "sweep.json").read_text())
    (root / "sweep.json").write_text(json.dumps({**plan, "rank_test": False}))
    out = build_report(root, tmp_path / "rep")
    index = (out / "index.md").read_text()
    assert "No rank test across the data sets" in index and "Friedman" not in index
    assert "not drawn: no rank test" in index and not (out / "cd_diagram.png").exists()
    assert pd.read_csv(out / "suite_table.csv").mean_rank.notna().all()
    with pytest.raises(ValueError, match="rank_test"):
        (root / "sweep.json").write_text(json.dumps({**plan, "rank_test": "no"}))
        build_report(root, tmp_path / "rep2")


def test_rank_test_is_read_from_the_sweep(tmp_path):
    from harness.spec.sweep import load_sweep

    assert load_sweep(str(write_sweep(tmp_path))).report.rank_test is True
    assert load_sweep(str(write_sweep(tmp_path, "no.toml", report={"rank_test": False}))).report.rank_test is False
    assert load_sweep("cpu").report.rank_test is False
    with pytest.raises(ValueError, match="report.rank_test"):
        load_sweep(str(write_sweep(tmp_path, "bad.toml", report={"rank_test": 1})))
