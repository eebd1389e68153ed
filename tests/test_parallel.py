"""Many runners, one results folder: claims, `--workers`, `--launcher local` (submitit's
local executor: the cluster path without SLURM), and in-run checkpoints through the runner."""
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_sweep

import harness.scheduling.one_run
from harness.cli import main
from harness.scheduling import claims
from harness.spec.protocol import Protocol, RunSpec
from harness.store.layout import Layout
from harness.store.records import load_records
from harness.store.sweep_plan import read_plan

ROOT = Path(__file__).resolve().parent.parent
# four runs of seconds on one thread each (bit-identical counts need equal thread counts), on the
# CPU (tiny_sweep's device: records compared bit for bit)
PAR = {"name": "par", "protocol": {"steps": 4}, "measure": {"threads": 1}}


def write_sweep(folder: Path, **overrides) -> Path:
    """The four runs with ``overrides`` (tiny_sweep's), written to ``folder / "par.toml"``."""
    path = folder / "par.toml"
    tiny_sweep(path, PAR, overrides)
    return path


def run(*args) -> int:
    return main(["run", *map(str, args), "--no-progress"])


def by_key(out: Path) -> dict:
    return {r["key"]: r for r in load_records(out)}


def counts(rec: dict) -> list:
    return [f["counts"] for f in rec["forms"]]


def assert_clean(out: Path):
    """Nothing half-written, no claim or checkpoint left behind."""
    assert not list(out.rglob("*.tmp")), list(out.rglob("*.tmp"))
    for folder in ("claims", "checkpoints"):
        assert not (out / folder).exists() or not list((out / folder).iterdir()), folder


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The sweep run the plain way: (sweep file, results folder)."""
    root = tmp_path_factory.mktemp("plain")
    sweep = write_sweep(root)
    assert run(sweep, "--out", root / "out", "-q") == 0
    return sweep, root / "out"


# --------------------------------------------------------------------------- claims

def test_a_claim_holds_host_pid_and_a_heartbeat_and_is_released(tmp_path):
    held = claims.claim(tmp_path, "k1", heartbeat_s=0.05)
    path = Layout(tmp_path).claim("k1")
    info = json.loads(path.read_text())
    assert info["host"] == socket.gethostname() and info["pid"] == os.getpid() and info["started"]
    os.utime(path, (1, 1))  # the heartbeat brings the modification time back to now
    time.sleep(0.3)
    assert time.time() - path.stat().st_mtime < 5
    assert claims.claim(tmp_path, "k1") is None  # held by a live runner (this one)
    held.release()
    assert not path.exists()
    with claims.claim(tmp_path, "k1") as again:
        assert again.held()
    assert list((tmp_path / "claims").iterdir()) == []


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _plant(results: Path, key: str, host: str, pid: int, age_s: float) -> Path:
    """A claim of another runner, its heartbeat ``age_s`` seconds old."""
    path = Layout(results).claim(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "started": "then", "token": "theirs"}))
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


@pytest.mark.parametrize("host,pid,age_s,taken", [
    ("elsewhere", 1, claims.STALE_S + 60, True),   # no heartbeat for longer than the timeout
    ("elsewhere", 1, 5, False),                     # another host's live runner
    ("this", "dead", 5, True),                      # this host, a process that no longer exists
    ("this", "parent", claims.STALE_S - 60, False), # this host, a live process
])
def test_a_stale_claim_is_taken_over_and_a_live_one_is_not(tmp_path, host, pid, age_s, taken):
    host = socket.gethostname() if host == "this" else host
    pid = {"dead": _dead_pid(), "parent": os.getppid()}.get(pid, pid)
    path = _plant(tmp_path, "k", host, pid, age_s)
    held = claims.claim(tmp_path, "k")
    assert (held is not None) == taken
    assert (json.loads(path.read_text())["token"] != "theirs") == taken
    if held:
        held.release()
    assert not [p for p in (tmp_path / "claims").iterdir() if "takeover" in p.name]


def test_the_stale_timeout_can_be_changed(tmp_path, monkeypatch):
    _plant(tmp_path, "k", "elsewhere", 1, 30)
    assert claims.claim(tmp_path, "k") is None
    monkeypatch.setattr(claims, "STALE_S", 10)
    assert claims.claim(tmp_path, "k").held()


def test_of_many_threads_racing_for_one_stale_claim_exactly_one_wins(tmp_path):
    for round_ in range(20):
        key = f"k{round_}"
        _plant(tmp_path, key, "elsewhere", 1, claims.STALE_S + 60)
        start, won = threading.Barrier(8), []

        def race(start=start, key=key, won=won):
            start.wait()
            held = claims.claim(tmp_path, key)
            if held is not None:
                won.append(held)

        threads = [threading.Thread(target=race) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1, round_
        won[0].release()


def test_of_processes_racing_for_one_stale_claim_exactly_one_wins(tmp_path):
    """Separate processes (harness.scheduling.claims imports no torch: each starts in a blink)."""
    _plant(tmp_path, "k", "elsewhere", 1, claims.STALE_S + 60)
    go = time.time() + 1.5
    code = textwrap.dedent(f"""
        import time
        from harness.scheduling.claims import claim
        time.sleep(max(0, {go} - time.time()))
        held = claim({str(tmp_path)!r}, "k")
        print("won" if held else "lost", flush=True)
        time.sleep(1.5)  # hold it while the others try
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outs) == ["lost"] * 5 + ["won"], outs


# --------------------------------------------------------------------------- the runner and claims

def counting_run_one(monkeypatch) -> list:
    calls, real = [], harness.scheduling.one_run.run_one

    def run_one(rs, *a, **kw):
        calls.append(rs.key)
        return real(rs, *a, **kw)

    monkeypatch.setattr(harness.scheduling.one_run, "run_one", run_one)
    return calls


def test_a_run_claimed_by_a_live_runner_is_skipped_and_said(plain, tmp_path, monkeypatch, caplog):
    sweep, ref = plain
    out = tmp_path / "out"
    busy = sorted(by_key(ref))[0]
    _plant(out, busy, socket.gethostname(), os.getppid(), 5)  # a live process on this host
    calls = counting_run_one(monkeypatch)
    assert run(sweep, "--out", out) == 0
    assert len(calls) == 3 and busy not in calls
    assert "1 run is still running elsewhere (claimed in" in caplog.text
    df = pd.read_csv(out / "runs.csv")
    assert set(df.key) == set(by_key(ref)) - {busy}
    Layout(out).claim(busy).unlink()  # that runner ended without a record
    calls.clear()
    assert run(sweep, "--out", out) == 0
    assert calls == [busy] and set(pd.read_csv(out / "runs.csv").key) == set(by_key(ref))
    assert_clean(out)


def test_a_run_recorded_by_another_runner_after_the_listing_is_not_run(plain, tmp_path, monkeypatch, caplog):
    """Between the listing and the claim another runner finishes a run: after winning the
    claim, the record is looked for again, and the run is left alone."""
    sweep, ref = plain
    out = tmp_path / "out"
    first = sorted(by_key(ref))[0]
    real_claim = claims.claim

    def claim(results, key, *a, **kw):
        if key == first:  # the other runner's record lands just now
            Layout(results).record(key).write_bytes(Layout(ref).record(key).read_bytes())
        return real_claim(results, key, *a, **kw)

    monkeypatch.setattr(claims, "claim", claim)
    calls = counting_run_one(monkeypatch)
    assert run(sweep, "--out", out) == 0
    assert len(calls) == 3 and first not in calls
    assert "1 run was recorded by another runner meanwhile" in caplog.text
    assert set(pd.read_csv(out / "runs.csv").key) == set(by_key(ref))
    assert_clean(out)


def test_two_runner_processes_on_one_folder_do_every_run_once(plain, tmp_path):
    """Two `unet-ablate run` processes started together on one folder: each run_one call
    is logged (by a wrapper around the real one); every run is done once, by one of them."""
    sweep, ref = plain
    out, calls = tmp_path / "out", tmp_path / "calls.log"
    code = textwrap.dedent(f"""
        import os, sys
        import harness.scheduling.one_run
        real = harness.scheduling.one_run.run_one
        def run_one(rs, *a, **kw):
            with open({str(calls)!r}, "a") as f:
                f.write(f"{{os.getpid()}} {{rs.key}}\\n")
            return real(rs, *a, **kw)
        harness.scheduling.one_run.run_one = run_one
        from harness.cli import main
        sys.exit(main(["run", {str(sweep)!r}, "--out", {str(out)!r}, "--no-progress"]))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    lines = [line.split() for line in calls.read_text().splitlines()]
    keys = [k for _, k in lines]
    assert sorted(keys) == sorted(by_key(ref)), lines  # every run once
    recs = by_key(out)
    assert {k: counts(r) for k, r in recs.items()} == {k: counts(r) for k, r in by_key(ref).items()}
    assert set(pd.read_csv(out / "runs.csv").key) == set(recs)  # rebuilt from every record
    assert_clean(out)


# --------------------------------------------------------------------------- workers and launchers

def test_workers_give_the_records_of_a_plain_run(plain, tmp_path):
    sweep, ref = plain
    out = tmp_path / "out"
    assert run(sweep, "--out", out, "--workers", "2") == 0
    recs, want = by_key(out), by_key(ref)
    assert set(recs) == set(want)
    assert all(counts(recs[k]) == counts(want[k]) for k in want)
    assert all(r["env"]["threads"] == 1 and r["status"] == "ok" for r in recs.values())
    assert set(pd.read_csv(out / "runs.csv").key) == set(want)
    assert_clean(out)


def test_workers_split_the_threads_and_the_key_stays_the_sweeps():
    from harness.scheduling.workers import worker_threads

    assert [worker_threads(t, n) for t, n in [(2, 1), (2, 2), (8, 3), (1, 4)]] == [2, 1, 2, 1]


def test_the_thread_count_used_is_recorded_and_does_not_change_the_key():
    import variants
    from harness.data import DataSpec, load_dataset
    from harness.scheduling.one_run import run_one
    from harness.scheduling.planning import arch_for_data
    from harness.spec.protocol import Measure

    data = load_dataset(DataSpec("shapes", n_images=12, size=32))
    rs = RunSpec(arch=arch_for_data(variants.parse("unet-w4-d2"), data).to_dict(), data=data.spec.to_dict(),
                 protocol=Protocol(steps=2, batch_size=2, patch=32, eval_every=2),
                 measure=Measure(size=(32, 32), batch_size=2, warmup=0, min_run_time=0.01, repeats=2,
                                 threads=2))
    rec = run_one(rs, data, threads=1)
    assert rec["status"] == "ok" and rec["env"]["threads"] == 1
    assert rec["key"] == rs.key and rec["spec"]["measure"]["threads"] == 2


@pytest.mark.slow  # (make test-all) the preempted-job test in test_resume takes the same path and more
def test_the_local_launcher_gives_the_records_of_a_plain_run(plain, tmp_path):
    """The cluster path (submitit jobs, one per run) on this machine: seed 0's two runs."""
    sweep, ref = plain
    out = tmp_path / "out"
    assert run(sweep, "--out", out, "--seeds", "1", "--launcher", "local", "--time-min", "10") == 0
    recs, want = by_key(out), {k: r for k, r in by_key(ref).items() if r["seed"] == 0}
    assert set(recs) == set(want) and len(want) == 2
    assert all(counts(recs[k]) == counts(want[k]) for k in want)
    assert len(list((out / "submitit").glob("*_submitted.pkl"))) == 2
    assert set(pd.read_csv(out / "runs.csv").key) == set(want)
    assert_clean(out)
    assert run(sweep, "--out", out, "--seeds", "1", "--launcher", "local") == 0  # all recorded: no job
    assert len(list((out / "submitit").glob("*_submitted.pkl"))) == 2


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """`srun` and an `sbatch` that keeps the script it is given and answers a job id."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sbatch").write_text('#!/bin/sh\ncp "$1" "$(dirname "$1")/../sbatch.sh"\n'
                                 'echo "Submitted batch job 4242"\n')
    (bin_ / "srun").write_text("#!/bin/sh\n")
    for f in bin_.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")


def test_slurm_gets_one_array_with_the_launcher_table_and_the_overrides(tmp_path, fake_slurm, capsys):
    sweep = write_sweep(tmp_path, launcher={"partition": "cpu", "cpus_per_task": 4, "mem_gb": 8,
                                            "setup": ["module load cuda"],
                                            "additional_parameters": {"qos": "high", "account": "lab"}})
    out = tmp_path / "out"
    assert run(sweep, "--out", out, "--launcher", "slurm", "--no-wait", "--partition", "gpu",
               "--array-parallelism", "3", "--time-min", "30", "--gpus-per-task", "1") == 0
    printed = capsys.readouterr().out
    assert "4 job(s) submitted (slurm): 4242_0 4242_1 4242_2 4242_3" in printed and str(out / "submitit") in printed
    script = (out / "sbatch.sh").read_text()
    for line in ["--array=0-3%3", "--partition=gpu", "--time=30", "--gpus-per-node=1", "--cpus-per-task=4",
                 "--mem=8GB", "--qos=high", "--account=lab", "--job-name=unet-ablate-par"]:
        assert f"#SBATCH {line}\n" in script, (line, script)
    assert "module load cuda" in script
    assert (out / "sweep.json").is_file() and not (out / "runs").exists()  # planned, nothing run here


def test_slurm_without_sbatch_is_one_line(fails_cleanly, plain, tmp_path, monkeypatch):
    sweep, _ = plain
    monkeypatch.setenv("PATH", str(tmp_path))
    fails_cleanly("run", sweep, "--launcher", "slurm", "--out", tmp_path / "o",
                  names=["--launcher slurm needs SLURM: no sbatch"], untouched=[tmp_path / "o"])


def test_a_cluster_job_is_requeued_to_resume_when_preempted(plain, tmp_path):
    """submitit's checkpointing protocol: on preemption or at its time limit, the job
    hands back itself (the run then resumes from its in-run checkpoint)."""
    import cloudpickle

    from harness.scheduling.cluster import RunJob
    from harness.spec.sweep import load_sweep

    sweep, _ = plain
    job = RunJob(load_sweep(str(sweep)), tmp_path, "somekey", "shapes", 1, False, None)
    again = job.checkpoint()
    assert again.function is job and again.args == () and again.kwargs == {}
    assert cloudpickle.loads(cloudpickle.dumps(job)).key == "somekey"


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("overrides,needle", [
    ({"launcher": {"partitin": "gpu"}}, "launcher.partitin: unknown key (expected one of"),
    ({"launcher": {"timeout_min": 0}}, "launcher.timeout_min: expected a positive integer, got 0"),
    ({"launcher": {"gpus_per_task": 1.5}}, "launcher.gpus_per_task: expected an integer >= 0"),
    ({"launcher": {"additional_parameters": 5}}, "launcher.additional_parameters: expected a table"),
    ({"launcher": {"additional_parameters": {"qos": [1]}}}, "launcher.additional_parameters.qos: expected a text"),
    ({"launcher": {"additional_parameters": {"a": True}}}, "launcher.additional_parameters.a: expected a text"),
    ({"launcher": {"setup": "module load cuda"}}, "launcher.setup: expected a list of shell lines"),
    ({"launcher": 3, "protocol": {"eval_every": None}}, "launcher: expected a table"),  # no eval_every, as ever
])
def test_bad_launcher_settings_are_one_line(fails_cleanly, tmp_path, overrides, needle):
    bad = write_sweep(tmp_path, **overrides)
    fails_cleanly("run", bad, "--launcher", "local", "--out", tmp_path / "o", names=[needle, "par.toml"],
                  untouched=[tmp_path / "o"])


@pytest.mark.parametrize("args,needle", [
    (["--partition", "gpu"], "--partition needs --launcher slurm|local"),
    (["--no-wait"], "--no-wait needs --launcher"),
    (["--workers", "2", "--launcher", "local"], "--workers runs on this machine and --launcher as jobs"),
])
def test_launcher_options_out_of_place_are_one_line(fails_cleanly, plain, tmp_path, args, needle):
    sweep, _ = plain
    fails_cleanly("run", sweep, *args, "--out", tmp_path / "o", names=[needle], untouched=[tmp_path / "o"])


def test_the_launcher_without_submitit_is_one_line(fails_cleanly, plain, tmp_path, monkeypatch):
    sweep, _ = plain
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    fails_cleanly("run", sweep, "--launcher", "slurm", "--out", tmp_path / "o",
                  names=["--launcher needs submitit: pip install unet-ablate[cluster]"],
                  untouched=[tmp_path / "o"])


def test_a_claim_is_never_seen_half_written_and_an_empty_one_ages_out(tmp_path, monkeypatch):
    """A runner killed between creating and writing a claim must not block its run: claims
    appear whole (hard link), and an empty claim left by an O_EXCL fallback is stale after
    WRITE_GRACE_S."""
    from harness.scheduling import claims

    held = claims.claim(tmp_path, "k1")
    path = Layout(tmp_path).claim("k1")
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert [p.name for p in path.parent.iterdir()] == ["k1.json"]  # no private file left
    held.release()
    empty = Layout(tmp_path).claim("k2")
    empty.write_bytes(b"")  # what a writer killed right after O_EXCL leaves
    assert claims.claim(tmp_path, "k2") is None               # fresh: its writer may be writing
    old = time.time() - claims.WRITE_GRACE_S - 1
    os.utime(empty, (old, old))
    taken = claims.claim(tmp_path, "k2")
    assert taken is not None and json.loads(empty.read_text())["token"]
    taken.release()
    monkeypatch.setattr(claims.os, "link", lambda *a: (_ for _ in ()).throw(OSError(1, "no links")))
    fallback = claims.claim(tmp_path, "k3")                    # a file system without hard links
    assert fallback is not None and json.loads(Layout(tmp_path).claim("k3").read_text())["pid"]
    assert claims.claim(tmp_path, "k3") is None
    fallback.release()


# --------------------------------------------------------------------------- claims against clocks and PIDs

def test_a_claim_stamped_in_the_future_ages_on_the_observers_clock(tmp_path):
    """Clock skew between nodes: a dead runner's claim whose time is an hour ahead is stale
    once this observer has seen it unchanged for the timeout, not an hour later."""
    path = _plant(tmp_path, "k", "elsewhere", 1, -3600)
    assert claims.claim(tmp_path, "k", stale_s=0.3) is None  # first sight
    time.sleep(0.4)
    held = claims.claim(tmp_path, "k", stale_s=0.3)
    assert held is not None and json.loads(path.read_text())["token"] != "theirs"
    held.release()


def test_a_claim_that_changes_is_not_aged_by_the_observer(tmp_path):
    path = _plant(tmp_path, "k", "elsewhere", 1, -3600)
    assert claims.claim(tmp_path, "k", stale_s=0.3) is None
    time.sleep(0.4)
    t = time.time() + 3600  # its runner's heartbeat (in its own future) touched it meanwhile
    os.utime(path, (t, t))
    assert claims.claim(tmp_path, "k", stale_s=0.3) is None


def test_a_recycled_pid_is_not_the_claims_holder(tmp_path):
    """A live process with the holder's PID but another start time is not the holder."""
    path = _plant(tmp_path, "k", socket.gethostname(), os.getppid(), 5)
    info = json.loads(path.read_text())
    assert claims.claim(tmp_path, "k") is None  # no start time recorded: the PID is trusted
    path.write_text(json.dumps({**info, "pid_started": claims.process_start(os.getppid())}))
    assert claims.claim(tmp_path, "k") is None  # the same process
    path.write_text(json.dumps({**info, "pid_started": "another-boot:12345"}))
    held = claims.claim(tmp_path, "k")
    assert held is not None
    assert json.loads(path.read_text())["pid_started"] == claims.process_start(os.getpid())
    held.release()


def test_a_run_whose_holder_dies_during_the_sweep_is_taken_over_before_the_end(plain, tmp_path, monkeypatch,
                                                                                  caplog):
    sweep, ref = plain
    out = tmp_path / "out"
    keys = sorted(by_key(ref))
    first = read_plan(ref).runs[0].key  # the first run this runner tries: held, then orphaned
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _plant(out, first, socket.gethostname(), holder.pid, 5)
        real = harness.scheduling.one_run.run_one

        def run_one(rs, *a, **kw):  # the holder dies while this runner runs the others
            holder.kill()
            holder.wait()
            return real(rs, *a, **kw)

        monkeypatch.setattr(harness.scheduling.one_run, "run_one", run_one)
        assert run(sweep, "--out", out) == 0
    finally:
        holder.kill()
        holder.wait()
    assert set(pd.read_csv(out / "runs.csv").key) == set(keys)
    assert "still running elsewhere" not in caplog.text and "no longer held" in caplog.text
    assert_clean(out)


def test_a_claim_from_another_pid_namespace_is_not_judged_by_this_ones_pids(tmp_path):
    """Two containers can share a host name: a claim whose PID namespace is not this one's
    ages out by its heartbeat instead of being taken over because its PID is not seen here."""
    path = _plant(tmp_path, "k", socket.gethostname(), 2**22 - 3, 5)  # a PID that does not exist here
    info = json.loads(path.read_text())
    assert claims.is_stale(info, path.stat().st_mtime)  # written before pid_ns: this namespace's, as before
    other = {**info, "pid_ns": "pid:[1]"}
    assert not claims.is_stale(other, path.stat().st_mtime)
    assert claims.is_stale({**info, "pid_ns": claims.pid_namespace()}, path.stat().st_mtime)
    assert claims.is_stale(other, path.stat().st_mtime - claims.STALE_S - 1)  # its heartbeat stopped
    held = claims.claim(tmp_path, "fresh")
    try:
        assert json.loads(claims.Layout(tmp_path).claim("fresh").read_text())["pid_ns"] == claims.pid_namespace()
    finally:
        held.release()


def test_a_takeover_marker_stamped_in_the_future_still_ages(tmp_path):
    """A runner that died while taking a claim over left its marker, stamped by a node whose
    clock runs an hour ahead: this observer ages it on its own clock, then takes over."""
    import time

    path = _plant(tmp_path, "k", "elsewhere", 1, claims.STALE_S + 60)  # a stale claim
    data = path.read_bytes()
    marker = path.with_name(f".{path.name}.{claims._digest(data)}.takeover")
    marker.touch()
    future = time.time() + 3600
    os.utime(marker, (future, future))
    assert claims._take_over(path, stale_s=0.3) is False  # first sight of the marker: a taker may be at work
    time.sleep(0.5)
    assert claims._take_over(path, stale_s=0.3) is True and not path.exists() and not marker.exists()
