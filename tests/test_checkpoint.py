"""In-run checkpoints: a run killed at any step and resumed ends exactly where an
uninterrupted run ends (weights, history, model selection), bit for bit on CPU.

The validation scores are the test's own (``scripted_val_scores``), not the trained model's
Dice, so model selection is exercised on every torch build and CPU: no test here predicts a
training trajectory."""
import inspect
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import variants
from harness.data import DataSpec, load_dataset
from harness.scheduling.planning import arch_for_data
from harness.spec.protocol import Protocol, RunSpec
from harness.training.execution import Execution
from harness.training.train import discard_checkpoint, fit

CPU = torch.device("cpu")
# checkpoints at 3, 6, 9, 12 fall before, between and on evaluations (4, 8, 12, 14)
PROTOCOL = Protocol(steps=14, batch_size=4, patch=32, lr=1e-2, loss="ce", eval_every=4, checkpoint_every=3)
DATA = DataSpec("shapes", n_images=6, size=32)  # (on membranes this tiny run keeps its first Dice)


pytestmark = pytest.mark.usefixtures("one_thread")  # bit-identical CPU results: one thread count

# The validation score of each evaluation (at steps 4, 8, 12 and 14), chosen so that the best
# weights are those of step 8: neither the first evaluation's nor the last's.
SCORES = {4: 0.5, 8: 0.8, 12: 0.7, 14: 0.6}


def scripted_val_scores(model, *args, **kwargs) -> tuple[float, float]:
    """SCORES at the step the model has trained to, read from the steps BatchNorm counts in
    its weights (``num_batches_tracked``): a resumed run is scored as an uninterrupted one."""
    import torch
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    score = SCORES[int(bn.num_batches_tracked)]
    return score, score  # (Dice, the selection metric's score)


@pytest.fixture(scope="module", autouse=True)
def scripted_validation():
    """Scripted scores; and checkpoints on the protocol's interval exactly (a tiny model's
    save can take longer than 2% of three steps, which would widen it: tested apart)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("harness.training.train.validation_scores", scripted_val_scores)
        mp.setattr("harness.training.train.CHECKPOINT_BUDGET", None)
        yield


@pytest.fixture(scope="module")
def data():
    return load_dataset(DATA)


def tiny(data):
    return arch_for_data(variants.parse("unet-w4-d2"), data)


def train(data, protocol=PROTOCOL, **kw):
    """A freshly built tiny model trained under ``protocol``: (model, FitResult)."""
    spec = tiny(data)
    torch.manual_seed(0)
    model = variants.build(spec)
    return model, fit(model, spec, data, protocol, 0, Execution(), **kw)


@pytest.fixture(scope="module")
def reference(data, scripted_validation):
    """The uninterrupted run (checkpoints off: they must not change the result)."""
    return train(data, Protocol(**{**PROTOCOL.to_dict(), "checkpoint_every": 0}))


class Stop:
    """A progress bar that interrupts training after ``k`` steps, as Ctrl-C or a kill would,
    and remembers the step a run resumed at (fit reports it with one update first)."""

    def __init__(self, k: int):
        self.k, self.n, self.updates = k, 0, []

    def update(self, n: int):
        self.updates.append(n)
        self.n += n
        if self.n >= self.k:
            raise KeyboardInterrupt

    def set_postfix(self, **kw):
        pass


def assert_same_run(run, reference):
    (model, fr), (ref_model, ref) = run, reference
    state, ref_state = model.state_dict(), ref_model.state_dict()
    assert state.keys() == ref_state.keys()
    assert all(torch.equal(state[k], ref_state[k]) for k in state)
    untimed = lambda h: [{k: v for k, v in e.items() if k != "elapsed_s"} for e in h]  # noqa: E731
    assert untimed(fr.history) == untimed(ref.history)
    assert (fr.status, fr.steps, fr.best_step, fr.best_val_dice) == \
        (ref.status, ref.steps, ref.best_step, ref.best_val_dice)


def test_the_reference_run_is_not_trivial(reference):
    """Model selection is exercised: the best weights are neither the first evaluation's
    nor the last's, and the model ends holding them (its BatchNorm counted 8 steps)."""
    model, ref = reference
    assert ref.steps == 14 and [e["step"] for e in ref.history] == [4, 8, 12, 14]
    assert [e["val_dice"] for e in ref.history] == [SCORES[s] for s in (4, 8, 12, 14)]
    assert (ref.best_step, ref.best_val_dice) == (8, SCORES[8])
    assert scripted_val_scores(model)[0] == SCORES[8]


@pytest.mark.parametrize("k", [6, 8, 12, 2])
def test_a_run_interrupted_at_step_k_resumes_to_the_same_result(data, reference, tmp_path, k):
    """k=6: right after a checkpoint; 8: between (resumes at 6, then evaluates and keeps
    new best weights); 12: a checkpoint on an evaluation; 2: before the first checkpoint."""
    ck = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(data, progress=Stop(k), checkpoint=ck)
    assert ck.is_file() == (k >= 3)
    progress = Stop(99)
    assert_same_run(train(data, progress=progress, checkpoint=ck), reference)
    assert progress.updates[0] == (k // 3 * 3 or 1)  # where it resumed (1: from step 0)
    assert progress.n == PROTOCOL.steps
    assert ck.is_file()  # fit leaves it; the runner removes it
    discard_checkpoint(ck)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_process_resumes_to_the_same_result(data, reference, tmp_path):
    """kill -9 of a training process at a checkpoint-every-2 run, then resume in process."""
    ck = tmp_path / "run.ckpt"
    script = inspect.getsource(scripted_val_scores) + textwrap.dedent(f"""
        import time, torch, variants
        import harness.training.train
        from pathlib import Path
        from harness.data import DataSpec, load_dataset
        from harness.spec.protocol import Protocol
        from harness.training.execution import Execution
        from harness.training.train import fit
        torch.set_num_threads(1)
        SCORES = {SCORES!r}
        harness.training.train.validation_scores = scripted_val_scores
        harness.training.train.CHECKPOINT_BUDGET = None
        data = load_dataset(DataSpec(**{DATA.to_dict()!r}))
        spec = variants.parse({tiny(data).to_dict()!r})
        torch.manual_seed(0)
        model = variants.build(spec)
        class Slow:  # so that the kill comes before the end
            def update(self, n): time.sleep(0.05)
            def set_postfix(self, **kw): pass
        p = Protocol(**{{**{PROTOCOL.to_dict()!r}, "checkpoint_every": 2}})
        fit(model, spec, data, p, 0, Execution(), progress=Slow(), checkpoint=Path({str(ck)!r}))
        print("finished")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not ck.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        out, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    saved = torch.load(ck, weights_only=True)["step"]
    assert 2 <= saved < PROTOCOL.steps
    protocol = Protocol(**{**PROTOCOL.to_dict(), "checkpoint_every": 2})
    progress = Stop(99)
    assert_same_run(train(data, protocol, progress=progress, checkpoint=ck), reference)
    assert progress.updates[0] >= saved


def test_a_bad_checkpoint_is_ignored_with_a_warning(data, reference, tmp_path, caplog):
    """Garbage, a truncated file and a checkpoint of another protocol: training starts from
    step 0 (the uninterrupted result), with one warning naming the file; nothing crashes."""
    other = tmp_path / "other.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(data, Protocol(**{**PROTOCOL.to_dict(), "lr": 2e-2}), progress=Stop(7), checkpoint=other)
    good = tmp_path / "good.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(data, progress=Stop(7), checkpoint=good)
    garbage, truncated = tmp_path / "garbage.ckpt", tmp_path / "truncated.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    truncated.write_bytes(good.read_bytes()[:-100])
    for ck in (garbage, truncated, other):
        caplog.clear()
        progress = Stop(99)
        with caplog.at_level(logging.WARNING, logger="unet_ablate"):
            assert_same_run(train(data, progress=progress, checkpoint=ck), reference)
        assert progress.updates[0] == 1  # from step 0
        assert [r.name for r in caplog.records] == ["unet_ablate"]
        assert f"checkpoint {ck} ignored" in caplog.text and "starts from step 0" in caplog.text
    assert "written for another run" in caplog.text


def test_no_checkpoint_without_checkpoint_every(data, reference, tmp_path):
    off = Protocol(**{**PROTOCOL.to_dict(), "checkpoint_every": 0})
    assert_same_run(train(data, off, checkpoint=tmp_path / "run.ckpt"), reference)
    assert list(tmp_path.iterdir()) == []


def test_the_protocol_key_is_unchanged_while_checkpoints_are_off():
    assert RunSpec(arch={}, data={}).key == "be493e4453e30d70"  # the key before checkpoint_every
    assert "checkpoint_every" not in RunSpec(arch={}, data={}).to_dict()["protocol"]
    on = RunSpec(arch={}, data={}, protocol=Protocol(checkpoint_every=50))
    assert on.to_dict()["protocol"]["checkpoint_every"] == 50
    assert Protocol.from_dict(on.to_dict()["protocol"]) == on.protocol
    for bad in (-1, 2.0, True, "5"):
        with pytest.raises(ValueError, match="protocol.checkpoint_every: expected an integer >= 0"):
            Protocol(checkpoint_every=bad)


def test_a_checkpoint_that_cannot_be_saved_fails_no_run(data, reference, tmp_path, monkeypatch, caplog):
    """torch.save raises RuntimeError ("unexpected pos ...") when the disk fills mid-write:
    the run goes on without checkpoints, to the uninterrupted result, and leaves no partial
    file."""
    import harness.training.train

    real = torch.save

    def disk_full(obj, f):
        real(obj, f)
        raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos 4096 vs 2048")

    monkeypatch.setattr(harness.training.train.torch, "save", disk_full)
    ck = tmp_path / "run.ckpt"
    with caplog.at_level(logging.WARNING, logger="unet_ablate"):
        assert_same_run(train(data, checkpoint=ck), reference)
    assert list(tmp_path.iterdir()) == []
    assert caplog.text.count("not saved") == 1 and "RuntimeError" in caplog.text


@pytest.mark.parametrize("error, cause", [
    (OSError(28, "No space left on device"), "environment"),
    (MemoryError(), "environment"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "environment"),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), "run"),
    (ValueError("input too small"), "run"),
])
def test_a_failed_run_says_whether_the_machine_failed_it(error, cause):
    from harness.scheduling.one_run import failure_cause

    assert failure_cause(error) == cause


def test_a_save_that_costs_more_than_its_budget_widens_the_interval(data, tmp_path, monkeypatch, caplog):
    """Saves that take 50 ms against steps of a few ms: the interval grows to a multiple of
    checkpoint_every at which a save costs at most 2% of the steps between saves."""
    import harness.training.train

    saved = []
    real = harness.training.train._save

    def slow_save(path, identity, state):
        time.sleep(0.05)
        saved.append(state.step)
        return real(path, identity, state)

    monkeypatch.setattr("harness.training.train.CHECKPOINT_BUDGET", 0.02)
    monkeypatch.setattr("harness.training.train._save", slow_save)
    monkeypatch.setattr("harness.training.train.validation_scores", lambda *a, **kw: (0.5, 0.5))
    with caplog.at_level(logging.DEBUG, logger="unet_ablate"):
        train(data, Protocol(**{**PROTOCOL.to_dict(), "steps": 40, "eval_every": 40, "checkpoint_every": 2}),
              checkpoint=tmp_path / "run.ckpt")
    assert saved[0] == 2 and len(saved) < 19  # every 2 steps would save 19 times
    assert all(s % 2 == 0 for s in saved) and "checkpoints every" in caplog.text
