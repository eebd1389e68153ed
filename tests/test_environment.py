"""The environment behind the numbers: the hash-pinned lock agrees with pyproject.toml, every
record names the versions of every package that computed a number in it (and on CUDA the
CUDA stack and its settings), and records from different environments are named, never
mixed silently."""
import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from harness.store import environment as env_module
from harness.store.environment import PACKAGES, cuda_settings, current_versions, environment

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


# --------------------------------------------------------------------------- the lock

def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes) of requirements.lock."""
    text = (ROOT / "requirements.lock").read_text()
    out = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if block.startswith("#") or not block.strip():
            continue
        m = re.match(r"([A-Za-z0-9._-]+)==([^\s\\;]+)", block)
        assert m, f"requirements.lock: not an exact pin: {block.splitlines()[0]}"
        out[canonicalize_name(m[1])] = (m[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return out


def declared() -> list[Requirement]:
    """Every requirement of pyproject.toml, the extras' included."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + sum(project["optional-dependencies"].values(), [])]


def test_the_lock_pins_every_package_exactly_with_hashes():
    lock = locked()
    assert len(lock) > 20
    for name, (version, hashes) in lock.items():
        assert hashes, f"{name}=={version} has no hash"


def test_the_lock_pins_what_this_machine_type_can_install():
    """pip on the CI machine type refuses torch > 2.14.1 and torchvision > 0.29.1."""
    lock = locked()
    assert lock["torch"][0] == "2.14.1" and lock["torchvision"][0] == "0.29.1"
    constraints = (ROOT / "constraints.txt").read_text()
    assert "torch==2.14.1" in constraints and "torchvision==0.29.1" in constraints


def test_every_declared_requirement_is_locked_within_its_range():
    """The lock is a resolution of pyproject.toml's ranges (`make lock`), not a list of its own."""
    lock = locked()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in lock, f"{req} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(lock[name][0], prereleases=True), \
            f"requirements.lock pins {name}=={lock[name][0]}, outside pyproject.toml's {req}: run `make lock`"


def test_make_install_takes_the_lock_with_hashes():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes" in makefile and "-r $(LOCK)" in makefile and "LOCK := requirements.lock" in makefile


def test_a_venv_link_is_ignored(tmp_path):
    """`.venv/` would not match a symbolic link to a venv elsewhere."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / ".venv").symlink_to(tmp_path / "elsewhere")
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout
    assert ".venv" not in status and ".gitignore" in status


# --------------------------------------------------------------------------- what a record names

def test_the_env_names_every_package_that_computes_a_number(monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    env = environment(CPU, 1, "float32", False)
    for name in ("scipy", "scikit-image", "monai", "pandas", "thop"):
        assert name in PACKAGES and env[name] == metadata.version(name)
    assert env["torch"] == torch.__version__ and env["smp"] == metadata.version("segmentation-models-pytorch")
    assert env["submitit"] is None  # no submitit job ran this
    assert env["cuda"] is None      # the CPU: no CUDA stack behind the numbers
    assert set(current_versions()) <= set(env)


def test_a_submitit_job_names_submitit(monkeypatch):
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")  # what submitit sets in its jobs
    assert environment(CPU, 1, "float32", False)["submitit"] == metadata.version("submitit")


def test_the_cuda_settings_are_those_in_force():
    s = cuda_settings()
    assert s["runtime"] == torch.version.cuda
    old = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32)
    try:
        for value in (True, False):
            torch.backends.cudnn.benchmark = value
            torch.backends.cuda.matmul.allow_tf32 = not value
            s = cuda_settings()
            assert s["cudnn_benchmark"] is value and s["tf32_matmul"] is (not value)
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32 = old
    assert s["deterministic_algorithms"] == torch.are_deterministic_algorithms_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_env_names_runtime_cudnn_and_driver():
    env = environment(torch.device("cuda"), 1, "bfloat16", True)
    cuda = env["cuda"]
    assert cuda["runtime"] == torch.version.cuda and cuda["cudnn"] == torch.backends.cudnn.version()
    assert cuda["driver"] and re.match(r"\d+\.\d+", cuda["driver"])


# --------------------------------------------------------------------------- mixed environments

def env(**kw) -> dict:
    return {"device_name": "cpu", "threads": 2, "torch": "2.14.1", "scipy": "1.17.1", "cuda": None,
            "git_commit": "a" * 40, **kw}


def test_one_environment_says_nothing():
    assert env_module.env_mix([env()] * 5) == ""


def test_what_differs_is_named_with_its_runs_most_first():
    envs = [env()] * 24 + [env(torch="2.15.0")] * 3
    assert env_module.env_mix(envs) == "torch 2.14.1 (24 runs) and 2.15.0 (3 runs)"
    envs = [env(threads=4)] + [env(threads=2, git_commit="b" * 40)] * 2 + [env()]
    assert env_module.env_mix(envs) == ("threads 2 (3 runs) and 4 (1 run); "
                                     "git commit aaaaaaaaaa (2 runs) and bbbbbbbbbb (2 runs)")


def test_a_version_an_older_record_lacks_is_unrecorded_and_cuda_is_read_inside():
    old = {k: v for k, v in env().items() if k != "scipy"}
    assert env_module.env_mix([env(), old]) == "scipy 1.17.1 (1 run) and unrecorded (1 run)"
    gpu = [env(cuda={"runtime": "13.0", "driver": "580.1"}), env(cuda={"runtime": "13.0", "driver": "590.2"})]
    assert env_module.env_mix(gpu) == "driver 580.1 (1 run) and 590.2 (1 run)"
