"""Faults and hostile input, as a user who runs sweeps unattended meets them: each ends in
one line ``unet-ablate: error: <what, where, expected>``, exit status 2, no traceback, and
nothing half-written or lost. tests/README.md lists every bad input the suite covers."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_sweep

import harness.fileio
import harness.scheduling.one_run
from harness.cli import main
from harness.fileio import write_atomic, write_text_atomic
from harness.store.records import load_records, read_record
from harness.store.sweep_plan import read_plan

ROOT = Path(__file__).resolve().parent.parent
ROOT_USER = os.geteuid() == 0  # permissions do not stop root: those tests simulate the fault


# a sweep of seconds (one 2-level U-Net of width 4, 2 steps on 32x32 shapes): tiny_sweep's
# baseline alone, named by its file, measured on the default device; tiny_sweep(path, TINY, ...)
TINY = {"name": None, "measure": {"device": None}, "variants": {"one_factor": None}}


def write_sweep(folder: Path, **tables) -> Path:
    path = folder / "tiny.toml"
    tiny_sweep(path, TINY, tables)
    return path


def snapshot(folder: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A fully recorded tiny sweep: (sweep file, results folder)."""
    root = tmp_path_factory.mktemp("recorded")
    sweep = write_sweep(root)
    assert main(["run", str(sweep), "--out", str(root / "out"), "--no-progress", "-q"]) == 0
    return sweep, root / "out"


def copy_of(recorded, tmp_path) -> tuple[Path, Path]:
    sweep, out = recorded
    shutil.copytree(out, tmp_path / "out")
    return sweep, tmp_path / "out"


def counting_run_one(monkeypatch) -> list:
    calls = []
    real = harness.scheduling.one_run.run_one

    def run_one(rs, *a, **kw):
        calls.append(rs.key)
        return real(rs, *a, **kw)

    monkeypatch.setattr(harness.scheduling.one_run, "run_one", run_one)
    return calls


# --------------------------------------------------------------------------- sweep files

@pytest.mark.parametrize("tables,needle", [
    ({"name": 5}, "name: expected a plain name"),
    ({"name": "../../escaped"}, "name: expected a plain name"),
    ({"name": "/tmp/escaped"}, "name: expected a plain name"),
    ({"description": 3}, "description: expected a text string, got 3"),
    ({"variants": {"one_factor": ["act"]}}, "variants.one_factor: expected a table of axis = [values]"),
    ({"variants": {"grid": 5}}, "variants.grid: expected a table"),
    ({"variants": {"explicit": ["x"]}}, "variants.explicit: expected a table of label = spec name"),
    ({"variants": {"one_factor": {"act": [1]}}}, "variants.one_factor.act: act: expected one of relu, relu6"),
    ({"variants": {"grid": {"up": "sideways"}}}, "variants.grid: up: expected one of"),
    ({"variants": {"explicit": {"x": 5}}}, "variants.explicit.x: cannot make a spec from int"),
    ({"protocol": {"lr": 1e300}}, "protocol.lr: expected a number > 0 that fits float32, got 1e+300"),
    ({"protocol": {"lr": float("inf")}}, "protocol.lr: expected a number > 0 that fits float32, got inf"),
    ({"protocol": {"lr": 1e-50}}, "protocol.lr: expected a number > 0 that fits float32, got 1e-50"),
    ({"protocol": {"weight_decay": 1e39}}, "protocol.weight_decay: expected a number >= 0 that fits float32"),
    ({"protocol": {"lr": float("nan")}}, "protocol.lr: expected a number > 0"),
])
def test_every_wrong_value_in_a_sweep_file_is_one_line(fails_cleanly, tmp_path, tables, needle):
    bad = write_sweep(tmp_path, **tables)
    fails_cleanly("run", bad, names=[needle, "tiny.toml"],
                  untouched=[ROOT / "results", ROOT.parent / "escaped", Path("/tmp/escaped")])


def test_a_measure_size_too_small_for_a_model_is_refused_before_any_training(fails_cleanly, tmp_path,
                                                                            monkeypatch):
    calls = counting_run_one(monkeypatch)
    bad = write_sweep(tmp_path, variants={"explicit": {"deep": "unet-w4-d3"}}, measure={"size": [6, 6]})
    fails_cleanly("run", bad, "--out", tmp_path / "out",
                  names=["measure.size", "'deep'", "6x6 is smaller than 8x8"], untouched=[tmp_path / "out"])
    assert calls == []


def test_the_sweep_name_never_leaves_the_results_root(tmp_path):
    """A name from the file's stem is made a plain name; a given one must already be."""
    from harness.spec.sweep import load_sweep

    odd = tmp_path / "my sweep (v2).toml"
    tiny_sweep(odd, TINY)
    assert load_sweep(str(odd)).name == "my_sweep__v2_"


# --------------------------------------------------------------------------- filesystem

@pytest.mark.parametrize("where", ["out is a file", "out below a file", "runs is a file",
                                   "samples is a file", "sweep.json is a folder"])
def test_a_file_where_a_folder_belongs_is_one_line_and_nothing_written(fails_cleanly, tmp_path, where):
    sweep = write_sweep(tmp_path)
    out = tmp_path / "out"
    target = {"out is a file": out, "out below a file": out, "runs is a file": out / "runs",
              "samples is a file": out / "samples", "sweep.json is a folder": out / "sweep.json"}[where]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.mkdir() if where == "sweep.json is a folder" else target.write_text("x")
    out_arg = out / "sub" if where == "out below a file" else out
    fails_cleanly("run", sweep, "--out", out_arg, names=[target, "expected"], untouched=[tmp_path])


def test_report_into_a_file_or_from_a_file_is_one_line(fails_cleanly, recorded, tmp_path):
    _, out = recorded
    afile = tmp_path / "afile"
    afile.write_text("x")
    fails_cleanly("report", out, "--out", afile, names=[afile, "expected a report folder"], untouched=[tmp_path, out])
    fails_cleanly("report", out, "--out", afile / "sub", names=[afile, "to hold"], untouched=[tmp_path, out])
    fails_cleanly("report", afile, names=[afile, "is a file, expected a results folder"], untouched=[tmp_path])


def test_a_fully_recorded_sweep_reruns_without_writing_anything(recorded, tmp_path, capsys, monkeypatch):
    """So that its summary prints from a read-only results folder (simulated for root)."""
    sweep, out = copy_of(recorded, tmp_path)
    command = ["run", str(sweep), "--out", str(out), "--no-progress", "-q"]
    assert main(command) == 0  # the copy's plan names its own folder in its command
    capsys.readouterr()
    before = snapshot(out)
    calls = counting_run_one(monkeypatch)
    if not ROOT_USER:
        for p in [out, *out.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
    try:
        assert main(command) == 0
    finally:
        for p in [out, *out.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
    assert calls == [] and snapshot(out) == before
    assert "baseline" in capsys.readouterr().out


def test_a_read_only_results_folder_fails_before_training(fails_cleanly, recorded, tmp_path, monkeypatch):
    sweep, out = copy_of(recorded, tmp_path)
    missing = sorted((out / "runs").glob("*.json"))[0]
    missing.unlink()
    calls = counting_run_one(monkeypatch)
    if ROOT_USER:
        def refuse(*a, **kw):
            raise PermissionError(errno.EACCES, "Permission denied")
        monkeypatch.setattr(harness.fileio.tempfile, "mkstemp", refuse)
    else:
        (out / "runs").chmod(0o555)
    try:
        fails_cleanly("run", sweep, "--out", out, "--no-progress",
                      names=[out / "runs", "Permission denied", "expected a folder you can write to"],
                      untouched=[out])
    finally:
        (out / "runs").chmod(0o755)
    assert calls == []


def test_a_full_disk_keeps_every_record_whole_and_names_the_path(fails_cleanly, tmp_path, monkeypatch):
    """The disk fills while the second run's record is written: the first record stays
    whole, no temporary file is left, the line names the record; freed, the same command
    runs only the run that was lost."""
    sweep = write_sweep(tmp_path)
    out = tmp_path / "out"
    calls = counting_run_one(monkeypatch)
    real_fsync = os.fsync

    def fsync(fd):
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(harness.fileio.os, "fsync", fsync)
    err = fails_cleanly("run", sweep, "--out", out, "--no-progress",
                        names=["No space left on device", "run the same command again"])
    second = out / "runs" / f"{calls[1]}.json"
    assert str(second) in err
    assert [p.name for p in (out / "runs").iterdir()] == [f"{calls[0]}.json"]  # no .tmp left behind
    assert read_record(out / "runs" / f"{calls[0]}.json")["status"] == "ok"
    assert not list(out.rglob("*.tmp")) and not (out / "runs.csv").exists()
    monkeypatch.setattr(harness.fileio.os, "fsync", real_fsync)
    calls.clear()
    assert main(["run", str(sweep), "--out", str(out), "--no-progress", "-q"]) == 0
    assert calls == [second.stem]


def test_write_atomic_keeps_the_old_file_on_a_failed_write_and_follows_the_umask(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")

    def fail(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as e:
        write_atomic(target, fail)
    assert e.value.filename == str(target) and e.value.errno == errno.ENOSPC
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
    old = os.umask(0o027)
    try:
        assert write_text_atomic(tmp_path / "b.txt", "new")
        assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    mtime = (tmp_path / "b.txt").stat().st_mtime_ns
    assert not write_text_atomic(tmp_path / "b.txt", "new")  # unchanged: not written again
    assert (tmp_path / "b.txt").stat().st_mtime_ns == mtime


def test_records_follow_the_umask(recorded):
    _, out = recorded
    mask = os.umask(0)
    os.umask(mask)
    for p in [*(out / "runs").iterdir(), out / "runs.csv", out / "sweep.json"]:
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask, p


# --------------------------------------------------------------------------- records

@pytest.mark.parametrize("content", ["[]", "null", "{}", '{"schema": 2}', "[1, 2"])
def test_a_file_that_is_not_a_run_record_is_left_out_with_a_word(recorded, tmp_path, content):
    _, out = copy_of(recorded, tmp_path)
    bad = sorted((out / "runs").glob("*.json"))[0]
    bad.write_text(content)
    skipped = []
    recs = load_records(out, read_plan(out).keys, skipped)
    assert len(recs) == 1 and len(skipped) == 1
    assert str(bad) in skipped[0] and "not a" in skipped[0] and "run record" in skipped[0]


def test_run_and_report_skip_a_non_record_and_say_so(recorded, tmp_path, capsys, monkeypatch):
    sweep, out = copy_of(recorded, tmp_path)
    bad = sorted((out / "runs").glob("*.json"))[0]
    bad.write_text("[]")
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "not a run record" in capsys.readouterr().err
    assert f"{bad}: not a run record" in (tmp_path / "rep" / "index.md").read_text()
    calls = counting_run_one(monkeypatch)
    assert main(["run", str(sweep), "--out", str(out), "--no-progress"]) == 0
    assert f"{bad}: not a run record" in capsys.readouterr().err
    assert calls == [bad.stem] and read_record(bad)["status"] == "ok"


# --------------------------------------------------------------------------- profile and the process

def test_profile_below_the_minimum_size_is_one_line(fails_cleanly):
    fails_cleanly("profile", "baseline", "--size", "8", "8", names=["8x8 is smaller than 16x16", "depth 4"])


def _max_rss_mib(code: str) -> tuple[float, str]:
    probe = ("import resource, subprocess, sys\n"
             f"r = subprocess.run([sys.executable, '-c', {code!r}], capture_output=True, text=True)\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
             "print(r.stdout.strip() or r.stderr)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True).stdout
    rss, result = out.split("\n", 1)
    return float(rss), result.strip()


def test_profile_of_a_huge_image_needs_no_image_sized_memory():
    """``profile baseline --size 4096 4096`` runs both MAC counts on ``meta``: a real forward
    of the full-width U-Net would hold gigabytes of activations; it needs what importing
    torch needs."""
    base, _ = _max_rss_mib("import harness.training.cost")
    start = time.perf_counter()
    rss, result = _max_rss_mib("import sys; from harness.cli import main; "
                               "sys.exit(main(['profile', 'baseline', '--size', '4096', '4096', '--json']))")
    p = json.loads(result)
    assert p["input_shape"] == [1, 3, 4096, 4096] and abs(p["macs_thop"] / p["macs"] - 1) < 0.01
    assert rss - base < 300, (rss, base)
    assert time.perf_counter() - start < 120


def test_ctrl_c_during_start_up_is_one_line():
    """SIGINT while Python imports torch (over a second, even with warm caches), before any
    command runs; inside torch's C++ initialisation it would abort the process, so start-up
    holds Ctrl-C back and answers it right after."""
    p = subprocess.Popen([sys.executable, "-m", "harness", "list"], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err == "unet-ablate: interrupted\n" and out == "", err


def test_debug_shows_the_traceback_instead_of_one_line():
    with pytest.raises(ValueError, match="no-such-net"):
        main(["profile", "no-such-net", "--debug"])
    r = subprocess.run([sys.executable, "-m", "harness", "--debug", "profile", "no-such-net"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" in r.stderr and "no-such-net" in r.stderr


# --------------------------------------------------------------------------- names that become paths

@pytest.mark.parametrize("field, value", [("dataset", "../../victim"), ("dataset", "/tmp/abs"),
                                          ("key", "../k")])
def test_a_record_whose_name_is_a_path_is_left_out_and_nothing_is_written_outside(recorded, tmp_path, field,
                                                                                   value):
    """Results folders are shared: a record is untrusted input. Its names never become paths."""
    _, out = copy_of(recorded, tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "deep_supervision.png").write_text("keep me")
    path = sorted((out / "runs").glob("*.json"))[0]
    rec = json.loads(path.read_text())
    rec[field] = value
    path.write_text(json.dumps(rec))
    with pytest.raises(ValueError, match=f"{field} .* is not a plain name"):
        read_record(path)
    report = tmp_path / "a" / "b" / "report"
    assert main(["report", str(out), "--out", str(report), "-q"]) == 0
    assert "is not a plain name" in (report / "index.md").read_text()  # left out, with its reason
    assert [p.name for p in victim.iterdir()] == ["deep_supervision.png"]
    assert not Path("/tmp/abs").exists() or field != "dataset"


def test_a_plan_naming_a_path_is_one_line(fails_cleanly, recorded, tmp_path):
    _, out = copy_of(recorded, tmp_path)
    plan = json.loads((out / "sweep.json").read_text())
    plan["datasets"] = ["shapes", "../../victim"]
    (out / "sweep.json").write_text(json.dumps(plan))
    fails_cleanly("report", out, "--out", tmp_path / "report", names=["sweep.json", "../../victim", "plain name"],
                  untouched=[tmp_path / "report", tmp_path / "victim"])


def test_a_run_the_machine_failed_says_so_and_how_to_rerun_it(tmp_path, monkeypatch):
    sweep = write_sweep(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(harness.scheduling.one_run, "fit", full)
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--out", str(out), "--no-progress", "-q"]) == 0
    recs = load_records(out)
    assert {(r["status"], r["cause"]) for r in recs} == {("failed", "environment")}
    assert main(["report", str(out), "--out", str(tmp_path / "report"), "-q"]) == 0
    assert "--retry-failed" in (tmp_path / "report" / "index.md").read_text()
