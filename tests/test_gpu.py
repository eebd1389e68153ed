"""GPU presets, measured: achieved training TFLOP/s and MFU in every record, the
``compile`` protocol key (compile time apart from step time), and the CUDA paths of
training and measurement.

What can be computed on CPU is tested here on CPU (the formula, the peak table, the key
that ``compile = false`` leaves unchanged, the compiled-training plumbing through
TorchDynamo's ``eager`` backend, which compiles nothing and takes seconds); what needs a
GPU (inductor, bf16 autocast, CUDA events, peak memory, the ``gpu`` preset end to end) runs
only where CUDA is present."""
import contextlib
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import variants
from harness.data import DataSpec, load_dataset
from harness.scheduling.one_run import run_one
from harness.scheduling.planning import arch_for_data
from harness.spec.protocol import Measure, Protocol, RunSpec
from harness.store import records, runs_table
from harness.training import measure, train
from harness.training.cost import count_macs
from harness.training.execution import Execution
from harness.training.measure import (
    PEAK_BF16_TFLOPS,
    device_peak_tflops,
    inference_cost,
    mfu,
    peak_bf16_tflops,
    time_call,
    train_tflops,
)
from harness.training.train import discard_checkpoint, fit

CPU = torch.device("cpu")
NO_CUDA = not torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
DATA = DataSpec("shapes", n_images=6, size=32)
TINY = Protocol(steps=8, batch_size=4, patch=32, lr=1e-2, loss="ce", eval_every=4)


pytestmark = pytest.mark.usefixtures("one_thread")  # bit-identical CPU results: one thread count


@pytest.fixture(scope="module")
def data():
    return load_dataset(DATA)


def train_tiny(data, protocol=TINY, arch="unet-w4-d2", device="cpu", **kw):
    spec = arch_for_data(variants.parse(arch), data)
    ex = Execution.resolve(protocol, Measure(device=device))
    torch.manual_seed(0)
    model = ex.place(variants.build(spec))
    return model, fit(model, spec, data, protocol, 0, ex, **kw)


def tiny_run(data_spec=DATA, arch="unet-w4-d2", device="cpu", **protocol) -> RunSpec:
    p = {**dataclasses.asdict(TINY), **protocol}
    return RunSpec(arch=arch_for_data(variants.parse(arch), load_dataset(data_spec)).to_dict(),
                   data=data_spec.to_dict(), protocol=Protocol(**p),
                   measure=Measure(size=(32, 32), batch_size=2, warmup=0, min_run_time=0.01, repeats=3,
                                   keep_predictions=1, device=device), seed=0)


# --------------------------------------------------------------------------- the compile key

def test_compile_is_in_the_run_key_only_when_on():
    assert RunSpec(arch={}, data={}).key == "be493e4453e30d70"  # the key before compile existed
    assert "compile" not in Protocol().to_dict() and "compile" not in Protocol(compile=False).to_dict()
    on = RunSpec(arch={}, data={}, protocol=Protocol(compile=True))
    assert on.to_dict()["protocol"]["compile"] is True and on.key != "be493e4453e30d70"
    assert Protocol.from_dict(on.to_dict()["protocol"]) == on.protocol
    assert Protocol.from_dict({"compile": False}) == Protocol()
    for bad in (1, 0, "yes", None):
        with pytest.raises(ValueError, match="protocol.compile: expected true or false"):
            Protocol(compile=bad)


# --------------------------------------------------------------------------- TFLOP/s and MFU

def test_train_tflops_is_six_macs_of_the_training_input_per_image():
    """3 x 2 x MACs x img/s, by hand: the baseline at full width, 192x192 patches."""
    macs = count_macs(variants.parse("unet-w64-d4"), 192, 192)
    assert macs == 27_094_155_264
    assert train_tflops(macs, 100.0) == pytest.approx(6 * 27_094_155_264 * 100 / 1e12)  # 16.26
    assert train_tflops(macs, 100.0) == pytest.approx(16.2564931584)


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756), ("NVIDIA H100 NVL", 835),
    ("NVIDIA H200", 989), ("NVIDIA GH200 480GB", 989), ("NVIDIA A100-SXM4-80GB", 312),
    ("NVIDIA A100-PCIE-40GB", 312), ("NVIDIA A100 80GB PCIe", 312), ("NVIDIA L40S", 362),
    ("NVIDIA L40", 181), ("NVIDIA L4", 121), ("NVIDIA A10", 125), ("NVIDIA GeForce RTX 4090", 165),
    ("Tesla V100-SXM2-32GB", 125), ("Tesla V100-PCIE-16GB", 112),
    # unknown: no guess (A10G is not an A10, a 4090 D not a 4090, AMD and older cards not listed)
    ("NVIDIA A10G", None), ("NVIDIA GeForce RTX 4090 D", None), ("NVIDIA GeForce RTX 3090", None),
    ("AMD Instinct MI300X", None), ("Tesla T4", None), ("", None), (None, None),
])
def test_the_dense_bf16_peak_of_known_devices(name, peak):
    assert peak_bf16_tflops(name) == peak


def test_mfu_is_achieved_over_peak_and_null_where_unknown():
    assert all(tflops > 0 and note for _, tflops, note in PEAK_BF16_TFLOPS)
    assert mfu(494.5, 989.0) == pytest.approx(0.5)
    assert mfu(10.0, None) is None and mfu(None, 989.0) is None
    assert device_peak_tflops(CPU) is None


def test_a_cpu_fit_counts_the_macs_of_the_input_the_model_sees(data):
    """A crop-mode model sees its patch with a margin of context: its training MACs are
    those of that larger input, not of the patch nor of measure.size."""
    arch = "unet-crop-w4-d2"
    spec = arch_for_data(variants.parse(arch), data)
    n = variants.input_geometry(spec, TINY.patch)[0]
    assert n > TINY.patch
    _, fr = train_tiny(data, arch=arch)
    assert fr.status == "ok" and fr.train_img_s > 0
    assert fr.train_tflops == pytest.approx(6 * count_macs(spec, n, n) * fr.train_img_s / 1e12)
    assert fr.mfu is None and fr.compile_s is None and fr.peak_mem_mb is None


def test_a_cpu_record_has_train_tflops_and_no_mfu(tmp_path):
    rec = run_one(tiny_run(), load_dataset(DATA))
    assert rec["status"] == "ok", rec["error"]
    t = rec["train"]
    assert t["train_tflops"] > 0 and t["mfu"] is None and t["compile_s"] is None
    assert set(records.TRAIN_KEYS) <= set(t)
    path = tmp_path / "runs" / f"{rec['key']}.json"
    path.parent.mkdir()
    path.write_text(json.dumps(rec))
    df = runs_table.runs_frame([records.read_record(path)])
    assert {"train_tflops", "mfu", "compile_s"} <= set(df.columns)
    assert df.train_tflops.iloc[0] == pytest.approx(t["train_tflops"]) and df.mfu.isna().all()


def test_records_written_before_tflops_and_mfu_are_still_read(tmp_path):
    """A record of the same schema whose train section lacks the keys added since."""
    rec = run_one(tiny_run(steps=2, eval_every=2), load_dataset(DATA))
    for key in records.TRAIN_ADDED:
        del rec["train"][key]
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / f"{rec['key']}.json").write_text(json.dumps(rec))
    [read] = records.load_records(tmp_path)
    assert all(read["train"][k] is None for k in ("compile_s", "train_tflops", "mfu"))
    assert (read["train"]["selected_on"], read["train"]["best_val_score"]) == ("dice", read["train"]["best_val_dice"])
    df = runs_table.write_runs_csv(tmp_path, [read])
    assert df[["train_tflops", "mfu", "compile_s"]].isna().all().all() and (df.train_img_s > 0).all()
    rec["train"] = None  # a run that failed before training: still one row
    assert runs_table.runs_frame([records.check_record(rec, "x")]).mfu.isna().all()


# --------------------------------------------------------------------------- compile

def _eager_backend(monkeypatch):
    """Dynamo traces and runs the captured graphs as they are: the compiled-training path
    (wrapper, first-step timing, state_dict, checkpoints) in seconds on CPU."""
    def compile_module(model):
        torch._dynamo.reset()
        return torch.compile(model, dynamic=False, backend="eager")

    monkeypatch.setattr(train, "compile_module", compile_module)


class Stop:
    """A progress bar that interrupts training after ``k`` steps, as a kill would."""

    def __init__(self, k: int):
        self.k, self.n = k, 0

    def update(self, n: int):
        self.n += n
        if self.n >= self.k:
            raise KeyboardInterrupt

    def set_postfix(self, **kw):
        pass


def test_compiled_training_keeps_plain_weights_and_times_compilation_apart(data, monkeypatch, tmp_path):
    """Under compile: the same weights and history as eager (the eager backend runs the same
    kernels), compile time in compile_s and not in the step times, the model's own
    state_dict (no ``_orig_mod.`` prefix) in checkpoints, and a resume that compiles again
    and ends where the uninterrupted run ends."""
    _eager_backend(monkeypatch)
    ref_model, ref = train_tiny(data)
    compiled = Protocol(**{**dataclasses.asdict(TINY), "compile": True, "checkpoint_every": 3})
    ck = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_tiny(data, compiled, progress=Stop(5), checkpoint=ck)
    saved = torch.load(ck, weights_only=True)
    assert saved["step"] == 3 and saved["compile_s"] > 0 and len(saved["step_times"]) == 2
    assert not any(k.startswith("_orig_mod.") for k in saved["model"])
    model, fr = train_tiny(data, compiled, progress=Stop(99), checkpoint=ck)
    discard_checkpoint(ck)
    state, ref_state = model.state_dict(), ref_model.state_dict()
    assert state.keys() == ref_state.keys()
    assert all(torch.equal(state[k], ref_state[k]) for k in state)
    untimed = lambda h: [{k: v for k, v in e.items() if k != "elapsed_s"} for e in h]  # noqa: E731
    assert untimed(fr.history) == untimed(ref.history) and fr.best_step == ref.best_step
    assert fr.compile_s > saved["compile_s"]  # the resumed process compiled again: both counted
    assert fr.train_img_s > 0 and fr.train_tflops > 0 and ref.compile_s is None


def test_a_compilation_error_fails_the_run_with_its_error(monkeypatch):
    """No silent fallback to eager: the backend's error is the run's error."""
    def broken(gm, example_inputs):
        raise RuntimeError("no compiler for this model")

    def compile_module(model):
        torch._dynamo.reset()
        return torch.compile(model, dynamic=False, backend=broken)

    monkeypatch.setattr(train, "compile_module", compile_module)
    rec = run_one(tiny_run(compile=True), load_dataset(DATA))
    assert rec["status"] == "failed"
    assert rec["error"] == ("RuntimeError: torch.compile failed in the first step: RuntimeError: "
                            "no compiler for this model")
    assert rec["train"] is None


# --------------------------------------------------------------------------- CUDA paths

@needs_cuda
def test_gpu_fit_with_bf16_channels_last_records_throughput_mfu_and_memory(data):
    cuda = torch.device("cuda")
    p = Protocol(**{**dataclasses.asdict(TINY), "amp": "bf16", "channels_last": True})
    _, fr = train_tiny(data, p, device="cuda")
    assert fr.status == "ok" and fr.train_img_s > 0 and fr.train_tflops > 0 and fr.peak_mem_mb > 0
    peak = peak_bf16_tflops(torch.cuda.get_device_name(cuda))
    assert fr.mfu == (None if peak is None else pytest.approx(fr.train_tflops / peak))


@needs_cuda
def test_gpu_training_peak_memory_leaves_out_what_was_allocated_before(data):
    cuda = torch.device("cuda")
    big = torch.empty(2**30, dtype=torch.uint8, device=cuda)  # 1 GiB, freed before training
    del big
    _, fr = train_tiny(data, device="cuda")
    assert 0 < fr.peak_mem_mb < 1024


@needs_cuda
def test_cuda_timing_measures_the_device_work_with_events():
    """An asynchronous kernel is timed by its events: twice the work, about twice the time
    (host-side timing without a synchronize would see almost nothing)."""
    cuda = torch.device("cuda")
    m = Measure(warmup=1, repeats=5, device="cuda")
    short, _, _ = time_call(lambda: torch.cuda._sleep(20_000_000), cuda, m)
    long, _, _ = time_call(lambda: torch.cuda._sleep(40_000_000), cuda, m)
    assert short > 1e-3 and 1.6 < long / short < 2.4


@needs_cuda
def test_inference_peak_memory_is_reset_per_call():
    cuda = torch.device("cuda")
    model = variants.build(variants.parse("unet-w4-d2").replace(in_channels=1)).to(cuda)
    big = torch.empty(2**30, dtype=torch.uint8, device=cuda)
    del big
    cost = inference_cost(model, 1, (64, 64), Execution(cuda, channels_last=True),
                          Measure(batch_size=2, warmup=1, repeats=3, device="cuda"))
    assert 0 < cost["peak_mem_mb"] < 1024 and cost["infer_img_s"] > 0 and cost["latency_ms"] > 0


@needs_cuda
def test_inference_peak_memory_leaves_out_what_was_held_before():
    """1 GiB held (not freed) before measuring is not inference's memory."""
    cuda = torch.device("cuda")
    model = variants.build(variants.parse("unet-w4-d2").replace(in_channels=1)).to(cuda)
    measure = Measure(batch_size=2, warmup=1, repeats=3, device="cuda")
    alone = inference_cost(model, 1, (64, 64), Execution(cuda), measure)["peak_mem_mb"]
    held = torch.empty(2**30, dtype=torch.uint8, device=cuda)
    beside = inference_cost(model, 1, (64, 64), Execution(cuda), measure)["peak_mem_mb"]
    del held
    assert beside == pytest.approx(alone, abs=8)


def test_a_mig_slice_has_no_peak_in_the_table():
    assert measure.peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert measure.peak_bf16_tflops("NVIDIA H100 80GB HBM3 MIG 1g.10gb") is None
    assert measure.peak_bf16_tflops("NVIDIA A100-SXM4-40GB MIG 3g.20gb") is None


def test_inference_is_timed_in_one_autocast_region_per_batch_size(monkeypatch):
    """The weights are cast once per measurement: every timed call of a batch size runs
    inside the same autocast region (entered twice in all: batch and batch 1)."""
    entered, calls = [], []

    @contextlib.contextmanager
    def amp():
        entered.append(len(calls))
        yield

    def counting(fn, device, m):
        for _ in range(3):
            calls.append(fn())
        return 0.01, 0.01, 0.01

    monkeypatch.setattr(measure, "time_call", counting)
    model = variants.build(variants.parse("unet-w4-d2").replace(in_channels=1))
    inference_cost(model, 1, (32, 32), Execution(amp=amp), Measure(batch_size=2, device="cpu"))
    assert entered == [0, 3] and len(calls) == 6


@needs_cuda
def test_gpu_compiled_run_with_inductor_end_to_end():
    """torch.compile (inductor) on CUDA with bf16 and channels_last through run_one: the
    record holds the compile time, achieved TFLOP/s and MFU; evaluation and inference cost
    run on the plain module."""
    rec = run_one(tiny_run(device="cuda", compile=True, amp="bf16", steps=10, eval_every=5),
                  load_dataset(DATA))
    assert rec["status"] == "ok", rec["error"]
    t = rec["train"]
    assert t["compile_s"] > 0 and t["train_img_s"] > 0 and t["train_tflops"] > 0 and t["peak_mem_mb"] > 0
    assert rec["env"]["dtype"] == "bfloat16" and rec["env"]["memory_format"] == "channels_last"
    assert all(f["cost"]["infer_img_s"] > 0 for f in rec["forms"])


@needs_cuda
@pytest.mark.slow
def test_the_gpu_preset_runs_end_to_end_reduced(tmp_path):
    """The `gpu` preset as it is (full widths, bf16, channels_last, every variant and data
    set), with small data, few steps and one seed: every run ok, with MFU where the device
    is known. Minutes on one GPU: `pytest -m slow tests/test_gpu.py` (or `make test-all`)."""
    from harness.scheduling.dispatch import run_sweep
    from harness.spec.sweep import load_sweep

    sweep = load_sweep("gpu")
    small = []
    for named in sweep.datasets:
        spec = named.spec
        if getattr(spec, "n_images", None):
            spec = dataclasses.replace(spec, n_images=min(spec.n_images, 16))
        small.append(dataclasses.replace(named, spec=spec))
    sweep = dataclasses.replace(
        sweep, datasets=tuple(small), seeds=(0,),
        protocol=dataclasses.replace(sweep.protocol, steps=12, eval_every=6, warmup=2),
        measure=dataclasses.replace(sweep.measure, repeats=3, warmup=1))
    df = run_sweep(sweep, tmp_path / "out", progress=False)
    assert (df.status == "ok").all(), df[df.status != "ok"].error.tolist()
    assert (df.train_tflops > 0).all() and (df.peak_mem_mb > 0).all()
    known = peak_bf16_tflops(torch.cuda.get_device_name()) is not None
    assert df.mfu.notna().all() if known else df.mfu.isna().all()
    assert not list(Path(tmp_path / "out").glob("checkpoints/*.pt"))
    assert np.isfinite(df.train_img_s).all()


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a GPU: the REQUIRE_CUDA failure is checked on one without")
def test_require_cuda_turns_a_cuda_skip_into_a_failure():
    """`REQUIRE_CUDA=1 make bench-gpu` (or the CUDA tests) on a machine without CUDA fails."""
    import subprocess
    import sys

    test = "tests/test_gpu.py::test_cuda_timing_measures_the_device_work_with_events"
    root = Path(__file__).resolve().parents[1]
    run = lambda env: subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],  # noqa: E731
                                     cwd=root, capture_output=True, text=True, env={**os.environ, **env})
    plain = run({"REQUIRE_CUDA": "0"})
    assert plain.returncode == 0 and "1 skipped" in plain.stdout
    required = run({"REQUIRE_CUDA": "1"})
    assert required.returncode == 1 and "REQUIRE_CUDA=1, but this test skipped" in required.stdout


def test_a_checkpoint_is_read_onto_the_cpu_whatever_the_device(tmp_path, monkeypatch):
    """load_state_dict places each tensor; a map_location of the GPU would move Adam's
    `step` counters there (and every resumed step would then sync per parameter)."""
    seen = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: seen.append(kw.get("map_location")) or real(*a, **kw))
    path = tmp_path / "ck.pt"
    torch.save({"identity": {"x": 1}}, path)
    assert train._read_checkpoint(path, {"x": 1}) == {"identity": {"x": 1}} and seen == ["cpu"]


@needs_cuda
def test_a_cuda_run_resumed_keeps_adams_step_on_the_cpu_and_its_weights_on_the_gpu(tmp_path):
    """Adam keeps `step` on the CPU (capturable off); a resumed CUDA run must too."""
    cuda = torch.device("cuda")
    model = variants.build(variants.parse("unet-w4-d2").replace(in_channels=1)).to(cuda)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 1, 32, 32, device=cuda)).mean().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    state = train.TrainState(model, opt, sched, np.random.default_rng(0), cuda, step=1)
    path = tmp_path / "ck.pt"
    torch.save({"identity": {}, **state.state_dict()}, path)
    fresh = variants.build(variants.parse("unet-w4-d2").replace(in_channels=1)).to(cuda)
    opt2 = torch.optim.Adam(fresh.parameters())
    resumed = train.TrainState(fresh, opt2, torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0),
                               np.random.default_rng(0), cuda)
    resumed.load(train._read_checkpoint(path, {}))
    steps = [s["step"] for s in opt2.state.values()]
    assert steps and all(t.device.type == "cpu" for t in steps)
    assert all(s["exp_avg"].device.type == "cuda" for s in opt2.state.values())
    assert all(p.device.type == "cuda" for p in fresh.parameters())


@needs_cuda
def test_a_cuda_run_records_cudnn_autotuning_and_keeps_its_best_weights_on_the_cpu(data, monkeypatch):
    kept = []
    real = train.TrainState.keep_if_best

    def spy(self, *a, **kw):
        real(self, *a, **kw)
        kept.append({v.device.type for v in (self.best_state or {}).values()})

    monkeypatch.setattr(train.TrainState, "keep_if_best", spy)
    rec = run_one(tiny_run(device="cuda", amp="bf16"), data)
    assert rec["status"] == "ok", rec["error"]
    assert rec["env"]["cuda"]["cudnn_benchmark"] is True
    assert kept and all(k == {"cpu"} for k in kept)


def test_under_compile_the_backward_is_traced_outside_autocast():
    """The loop runs only the forward under autocast; torch.compile must assume the same."""
    config = torch._functorch.config
    if not hasattr(config, "backward_pass_autocast"):
        pytest.skip(f"torch {torch.__version__} has no backward_pass_autocast")
    before = config.backward_pass_autocast
    with train.backward_outside_autocast(True):
        assert config.backward_pass_autocast == "off"
    assert config.backward_pass_autocast == before
    with train.backward_outside_autocast(False):
        assert config.backward_pass_autocast == before


def test_gpu_check_without_cuda_ends_in_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: `make gpu-check` runs here")
    import subprocess

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "check"
    done = subprocess.run(["bash", "tools/gpu_check.sh"], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "OUT": str(out)})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("gpu-check: ") and "no CUDA device" in done.stderr
    assert not out.exists()


def test_more_workers_than_gpus_is_refused_before_anything_is_written(fails_cleanly, tmp_path, monkeypatch):
    monkeypatch.setattr("harness.scheduling.workers.visible_gpus", lambda device: ["0"])
    out = tmp_path / "out"
    fails_cleanly("run", "smoke", "--workers", "2", "--out", str(out),
                  names=["--workers 2", "only 1 GPU"], untouched=[out])


def test_fp16_is_a_precision_that_runs_float32_on_cpu(data):
    rec = run_one(tiny_run(amp="fp16"), data)
    assert rec["status"] == "ok" and rec["env"]["dtype"] == "float32"
    assert tiny_run(amp="fp16").key != tiny_run(amp="bf16").key != tiny_run().key
    with pytest.raises(ValueError, match="protocol.amp"):
        Protocol(amp="fp8")


@needs_cuda
def test_a_cuda_fp16_step_trains_with_a_gradient_scaler(data, monkeypatch):
    made = []
    real = torch.amp.GradScaler

    def spy(*a, **kw):
        made.append(real(*a, **kw))
        return made[-1]

    monkeypatch.setattr(train.torch.amp, "GradScaler", spy)
    rec = run_one(tiny_run(device="cuda", amp="fp16"), data)
    assert rec["status"] == "ok", rec["error"]
    assert rec["env"]["dtype"] == "float16"
    assert len(made) == 1 and made[0].get_scale() > 0
    assert all(np.isfinite(h["loss"]) for h in rec["train"]["history"])
