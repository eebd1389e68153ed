"""Defects of ``plan``, ``status``, claims and ``plan --power`` (an attack run's items 3, 4, 5,
17, 18, 20, 23 and 24): each is a bad input answered in one line, or a reading made to agree
with ``run``'s."""
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from conftest import tiny_sweep
from test_report import make_results

from harness.cli import main
from harness.report.summary import MIN_SEEDS
from harness.scheduling import claims, dispatch, forecast
from harness.scheduling.one_run import _finished
from harness.scheduling.planning import load_all, plan
from harness.scheduling.status import status_text, sweep_status
from harness.spec.sweep import MAX_SEEDS, load_sweep
from harness.store.layout import Layout


@pytest.fixture
def sweep_file(tmp_path):
    path = tmp_path / "tiny.toml"
    tiny_sweep(path)
    return path


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory):
    """``make_results``'s folder (records of 60 s each), copied afresh by ``results``."""
    return make_results(tmp_path_factory.mktemp("fab") / "r", samples=False)


@pytest.fixture
def results(fabricated, tmp_path):
    return shutil.copytree(fabricated, tmp_path / "r")


def strict_json(text: str):
    """JSON as the standard has it: NaN and Infinity are no JSON."""
    def refuse(name):
        raise AssertionError(f"{name} in the JSON output")
    return json.loads(text, parse_constant=refuse)


def records_of(root) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted(Layout(root).runs.glob("*.json"))}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --------------------------------------------------------------------------- 3: --mfu, --device-peak

@pytest.mark.parametrize("flag,value", [("--mfu", "0"), ("--device-peak", "0"), ("--mfu", "-1"), ("--mfu", "nan"),
                                        ("--device-peak", "inf"), ("--device-peak", "1e-320"),
                                        ("--mfu", "-0"), ("--device-peak", "fast")])
def test_plan_rate_flags_take_positive_finite_numbers_only(fails_cleanly, sweep_file, tmp_path, flag, value):
    out = tmp_path / "out"
    fails_cleanly("plan", sweep_file, "--out", out, flag, value, names=[f"argument {flag}", "positive", value],
                  untouched=[out])


def test_plan_rate_flags_whose_product_is_no_rate_are_one_line(fails_cleanly, sweep_file):
    fails_cleanly("plan", sweep_file, "--device-peak", "1e-200", "--mfu", "1e-200",
                  names=["--device-peak x --mfu", "TFLOP/s"])


def test_plan_json_holds_finite_numbers_at_a_given_rate(sweep_file, tmp_path, capsys):
    assert main(["plan", str(sweep_file), "--out", str(tmp_path / "out"), "--mfu", "0.5", "--json"]) == 0
    est = strict_json(capsys.readouterr().out)
    assert est["rate"]["mfu"] == 0.5 and est["estimated_device_hours"] > 0


# --------------------------------------------------------------------------- 4: one reading of "recorded"

def test_plan_counts_as_recorded_what_run_would_not_do_again(sweep_file, results, tmp_path, capsys):
    out = tmp_path / "out"
    sweep = load_sweep(str(sweep_file))
    keys = [r.key for r in plan(sweep, load_all(sweep))]
    some = next(iter(records_of(results).values()))  # a valid record of schema 3, given each key below
    Layout(out).runs.mkdir(parents=True)
    Layout(out).record(keys[0]).write_text("[]")
    Layout(out).record(keys[1]).write_text(json.dumps({"schema": 2}))
    Layout(out).record(keys[2]).write_text(json.dumps({**some, "key": keys[2]}))
    Layout(out).record(keys[3]).write_text(json.dumps({**some, "key": keys[3], "schema": 2}))  # older: done again
    assert main(["plan", str(sweep_file), "--out", str(out), "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert (est["runs"], est["recorded"], est["todo"]) == (4, 1, 3)
    run_would_skip = [k for k in keys if _finished(Layout(out).record(k), False, None) is not None]
    assert run_would_skip == [keys[2]]
    for key in keys:  # every record `[]`: none recorded
        Layout(out).record(key).write_text("[]")
    assert main(["plan", str(sweep_file), "--out", str(out)]) == 0
    assert "4 runs, 0 recorded, 4 to do." in capsys.readouterr().out


def test_status_counts_as_missing_what_run_would_do_again(results):
    recs = records_of(results)
    by = {(r["variant"], r["seed"]): k for k, r in recs.items()}
    Layout(results).record(by["baseline", 0]).write_text("[]")
    older = by["baseline", 1]
    Layout(results).record(older).write_text(json.dumps({**recs[older], "schema": 2}))
    row = next(v for v in sweep_status(results)["variants"] if v["variant"] == "baseline")
    assert (row["ok"], row["missing"]) == (1, 2)


# --------------------------------------------------------------------------- 5: a claim written by hand

@pytest.mark.parametrize("content", [{"host": "h", "pid": [1, 2]}, {"host": {"a": 1}, "pid": 3},
                                     {"host": socket.gethostname(), "pid": -1}, {"host": "h", "pid": True},
                                     {"host": "h", "pid": 3, "token": 5}])
def test_status_treats_a_claim_that_names_no_runner_as_stale_with_a_word(results, content, capsys, caplog):
    key = next(iter(records_of(results)))
    Layout(results).record(key).unlink()
    path = Layout(results).claim(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))  # fresh: its heartbeat is now
    with caplog.at_level(logging.WARNING, logger="unet_ablate"):
        assert main(["status", str(results), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["totals"]["running"] == 0 and st["totals"]["missing"] == 1 and st["running"] == []
    assert "not a claim a runner wrote" in caplog.text and str(path) in caplog.text
    held = claims.claim(results, key)  # a runner takes it over at once
    assert held is not None
    held.release()


# --------------------------------------------------------------------------- 17: seeds and runs bounded

def test_plan_with_too_many_seeds_is_one_line(fails_cleanly, tmp_path):
    out = tmp_path / "out"
    fails_cleanly("plan", "smoke", "--seeds", "99999999999", "--out", out,
                  names=["--seeds", "99999999999", f"{MAX_SEEDS:,}"], untouched=[out])


def test_a_sweep_file_with_too_many_seeds_or_runs_is_one_line(fails_cleanly, tmp_path):
    many = tmp_path / "many.toml"
    tiny_sweep(many, seeds=MAX_SEEDS + 1)
    fails_cleanly("plan", many, names=[str(many), "seeds", f"{MAX_SEEDS:,}"])
    folds = tmp_path / "folds.toml"
    tiny_sweep(folds)  # 2 variants x 10,000 seeds x 6 folds: 120,000 runs
    fails_cleanly("plan", folds, "--seeds", MAX_SEEDS, "--folds", 6,
                  names=["120,000 runs", f"{forecast.MAX_RUNS:,}"])


# --------------------------------------------------------------------------- 18: the sweep's device

def test_device_peak_on_a_cpu_sweep_says_device_time_and_no_gpu(sweep_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["plan", str(sweep_file), "--out", str(out), "--device-peak", "2"]) == 0
    text = capsys.readouterr().out
    assert "Estimated device time" in text and "GPU" not in text and "processes" not in text
    assert "at MFU 100%" in text and "35%" not in text
    assert main(["plan", str(sweep_file), "--out", str(out), "--device-peak", "2", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["rate"]["device"] == "cpu" and est["estimated_gpu_hours"] is None and est["rate"]["mfu"] == 1.0
    cuda = tmp_path / "cuda.toml"
    tiny_sweep(cuda, measure={"device": "cuda"})
    assert main(["plan", str(cuda), "--out", str(out), "--device-peak", "2", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["rate"]["device"] == "cuda" and est["estimated_gpu_hours"] > 0 and est["rate"]["mfu"] == 0.35


# --------------------------------------------------------------------------- 20: times that are no times

def test_status_leaves_times_that_are_not_positive_finite_out_of_the_mean(results, capsys):
    recs = records_of(results)
    first, second, third = list(recs)[:3]
    for key, t in ((first, float("nan")), (second, -500.0)):
        Layout(results).record(key).write_text(json.dumps({**recs[key], "time_s": t}))  # NaN written as NaN
    Layout(results).record(third).unlink()  # one run left
    assert main(["status", str(results), "--json"]) == 0
    st = strict_json(capsys.readouterr().out)
    assert st["mean_run_s"] == pytest.approx(60.0) and st["eta_s"] == pytest.approx(60.0)
    assert st["untimed_runs"] == 2 and st["timed_runs"] == len(recs) - 3
    text = status_text(sweep_status(results))
    assert "nan min" not in text and "nan s" not in text and "ETA: 1.0 min" in text
    assert "2 record(s) whose time_s is not a positive finite number" in text


def test_status_of_huge_times_gives_no_infinite_eta(results, capsys):
    recs = records_of(results)
    for key in list(recs)[:2]:
        Layout(results).record(key).write_text(json.dumps({**recs[key], "time_s": 1.7e308}))
    Layout(results).record(list(recs)[2]).unlink()
    assert main(["status", str(results), "--json"]) == 0
    st = strict_json(capsys.readouterr().out)
    assert st["mean_run_s"] is not None and math.isfinite(st["mean_run_s"])


# --------------------------------------------------------------------------- 23: the seeds a test needs

def test_plan_power_of_a_pilot_without_a_test_names_min_seeds(fails_cleanly, sweep_file, results):
    for key, rec in records_of(results).items():
        if rec["seed"] == 2:  # 2 seeds left of every variant: no test
            Layout(results).record(key).unlink()
    fails_cleanly("plan", sweep_file, "--power", results, names=[f"at least {MIN_SEEDS} ok seeds"])
    assert MIN_SEEDS == 3


# --------------------------------------------------------------------------- 24: a leftover takeover marker

def _stale_claim_and_marker(results, key: str, marker_content: bytes, marker_age_s: float):
    """A claim of a process on this host that has ended, and the takeover marker a taker left."""
    path = Layout(results).claim(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "token": "theirs"}))
    marker = path.with_name(f".{path.name}.{claims._digest(path.read_bytes())}.takeover")
    marker.write_bytes(marker_content)
    t = time.time() - marker_age_s
    os.utime(marker, (t, t))
    return path, marker


@pytest.mark.parametrize("taker,age_s,taken", [
    ("dead", 0, True),                          # its taker, on this host, has ended
    ("empty", claims.WRITE_GRACE_S + 30, True), # empty (a taker of an older version), long past its writing
    ("live", 0, False),                         # its taker lives: a takeover under way
    ("empty", 0, False),                        # empty and fresh: a taker may be at work
])
def test_a_takeover_marker_whose_taker_is_gone_blocks_nobody(tmp_path, taker, age_s, taken):
    owner = {"dead": {"host": socket.gethostname(), "pid": _dead_pid()},
             "live": {"host": socket.gethostname(), "pid": os.getppid()}}.get(taker)
    path, marker = _stale_claim_and_marker(tmp_path, "k", b"" if owner is None else json.dumps(owner).encode(),
                                           age_s)
    held = claims.claim(tmp_path, "k")
    assert (held is not None) == taken and marker.exists() != taken
    if held:
        held.release()


def test_run_takes_over_a_run_whose_marker_was_left_and_says_so_in_words(tmp_path, caplog):
    sweep = tmp_path / "one.toml"
    tiny_sweep(sweep, seeds=1)
    out = tmp_path / "out"
    s = load_sweep(str(sweep))
    key = plan(s, load_all(s))[0].key
    owner = json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}).encode()
    _, marker = _stale_claim_and_marker(out, key, owner, 0)
    with caplog.at_level(logging.INFO, logger="unet_ablate"):
        assert main(["run", str(sweep), "--out", str(out), "--no-progress"]) == 0
    assert Layout(out).record(key).is_file() and not marker.exists()
    assert "still running elsewhere" not in caplog.text and "taking over run" in caplog.text


def test_what_other_runners_did_is_said_in_agreeing_words(tmp_path):
    assert dispatch._elsewhere_text(0, 1, tmp_path).startswith("1 run is still running elsewhere (claimed in ")
    assert dispatch._elsewhere_text(1, 0, tmp_path) == "1 run was recorded by another runner meanwhile"
    both = dispatch._elsewhere_text(2, 3, tmp_path)
    assert both.startswith("2 runs were recorded by other runners meanwhile and 3 runs are still running elsewhere")
    assert " are " not in dispatch._elsewhere_text(0, 1, tmp_path)
