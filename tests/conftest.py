import contextlib
import copy
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # seed_reference, conftest (tiny_sweep)
ROOT = Path(__file__).resolve().parent.parent


CUDA_SKIP = "needs a CUDA device"  # the reason every CUDA-only test skips with (a prefix)
REQUIRE_CUDA = os.environ.get("REQUIRE_CUDA") == "1"


# --------------------------------------------------------------------------- sweep files

TINY_SWEEP = {  # tiny_sweep's starting point: never changed (tiny_sweep works on a copy)
    "name": "tiny",
    "seeds": 2,
    "data": {"name": "shapes", "n_images": 12, "size": 32},
    "protocol": {"steps": 2, "batch_size": 2, "patch": 32, "eval_every": 2},
    "measure": {"size": [32, 32], "batch_size": 2, "warmup": 0, "min_run_time": 0.01, "repeats": 2,
                "keep_predictions": 1,
                "device": "cpu"},  # records compared bit for bit: CUDA kernels need not be deterministic
    "variants": {"baseline": "unet-w4-d2", "one_factor": {"up": ["bilinear"]}},
}


def tiny_sweep(path=None, *layers: dict, **overrides) -> str:
    """The TOML text of a sweep of seconds, written to ``path`` too when given: ``TINY_SWEEP``
    (2 seeds of a 2-level U-Net of width 4 and its bilinear-upsampling variant, 2 steps on
    12 synthetic 32x32 shapes, measured on the CPU) with each of ``layers`` (dicts), then
    ``overrides``, applied in turn.

    Each key of a layer sets that top-level key: None removes it; a dict is merged into the
    table the key holds (a None inside removes that key; a dict inside is an inline table
    and replaces); any other value replaces (a list of dicts makes ``[[key]]`` tables, as
    ``data=[{...}, {...}]`` for a suite). A table is started afresh with a layer that
    removes it: ``tiny_sweep(path, {"measure": None}, measure={"size": [8, 8]})``."""
    d = copy.deepcopy(TINY_SWEEP)
    for layer in (*layers, overrides):
        for key, value in layer.items():
            if value is None:
                d.pop(key, None)
            elif isinstance(value, dict):
                old = d.get(key) if isinstance(d.get(key), dict) else {}
                d[key] = {k: copy.deepcopy(v) for k, v in {**old, **value}.items() if v is not None}
            else:
                d[key] = copy.deepcopy(value)
    text = toml_text(d)
    if path is not None:
        Path(path).write_text(text)
    return text


def toml_text(d: dict) -> str:
    """``d`` as TOML (tomllib only reads it): its plain values first, then a ``[key]`` table
    for each dict and ``[[key]]`` tables for each list of dicts; dicts inside a table are
    inline tables."""
    def body(table: dict) -> str:
        return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in table.items())

    top, tables = [], []
    for key, value in d.items():
        if isinstance(value, dict):
            tables.append(f"[{_toml_key(key)}]\n{body(value)}")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.extend(f"[[{_toml_key(key)}]]\n{body(v)}" for v in value)
        else:
            top.append(f"{_toml_key(key)} = {_toml_value(value)}\n")
    return "\n".join(["".join(top), *tables])


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(s: str) -> str:
    """A basic string: quotes, backslashes and control characters escaped."""
    return '"' + "".join(_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or c == "\x7f" else c)
                         for c in s) + '"'


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)  # "a.b", "my key": quoted


def _toml_value(v) -> str:
    if isinstance(v, bool):  # before int: True is an int
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # 0.001, 1e+300, inf, nan: each read back as the same float
    if isinstance(v, (str, os.PathLike)):
        return _toml_string(os.fspath(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(_toml_value, v)) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    raise TypeError(f"no TOML for {v!r} ({type(v).__name__})")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """``REQUIRE_CUDA=1``: a test that skips for want of a CUDA device fails instead, so a
    GPU node whose driver is too old for its torch (CUDA unavailable) cannot pass silently."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_CUDA and report.skipped and CUDA_SKIP in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = f"REQUIRE_CUDA=1, but this test skipped: {report.longrepr[-1]}"


@pytest.fixture(autouse=True, scope="session")
def _data_cache(tmp_path_factory):
    """Synthetic data is cached in a folder of the test session, not the user's cache;
    subprocesses started by the tests inherit it."""
    old = os.environ.get("UNET_ABLATE_CACHE")
    os.environ["UNET_ABLATE_CACHE"] = str(tmp_path_factory.mktemp("data-cache"))
    yield
    if old is None:
        os.environ.pop("UNET_ABLATE_CACHE", None)
    else:
        os.environ["UNET_ABLATE_CACHE"] = old


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one CPU thread for a module: bit-identical results need the same thread
    count in every run compared (use with ``pytest.mark.usefixtures("one_thread")``)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _snapshot(path: Path):
    """Every file below ``path`` with its size and modification time (None: no such path)."""
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(path.rglob("*"))
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}


@pytest.fixture
def fails_cleanly(monkeypatch):
    """``fails_cleanly(*args, names=[...], untouched=[paths], in_process=True)`` runs
    ``unet-ablate ARGS`` and asserts that it fails as every user error must: exit status 2,
    one line ``unet-ablate: error: ...`` on stderr naming each of ``names``, no traceback,
    and nothing written under any of ``untouched`` (paths that did not exist still do not).
    In process (``harness.cli.main``, fast) by default; ``in_process=False`` runs
    ``python -m harness`` as a user would (seconds: it imports torch)."""
    def check(*args, names=(), untouched=(), in_process=True) -> str:
        before = {Path(p): _snapshot(Path(p)) for p in untouched}
        if in_process:
            from harness.cli import main

            monkeypatch.chdir(ROOT)
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main([str(a) for a in args])
            stderr = err.getvalue()
        else:
            r = subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=ROOT,
                               capture_output=True, text=True)
            code, stderr = r.returncode, r.stderr
        assert code == 2, stderr
        assert stderr.startswith("unet-ablate: error: ") and stderr.count("\n") == 1, stderr
        assert "Traceback" not in stderr
        for name in names:
            assert str(name) in stderr, stderr
        for path, snapshot in before.items():
            assert _snapshot(path) == snapshot, f"{path} was written"
        return stderr

    return check
