import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # seed_reference
ROOT = Path(__file__).resolve().parent.parent


CUDA_SKIP = "needs a CUDA device"  # the reason every CUDA-only test skips with (a prefix)
REQUIRE_CUDA = os.environ.get("REQUIRE_CUDA") == "1"


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
