"""Defects of the issue's items 9, 10, 15, 16, 22 and 25: TensorBoard folders one per run and
inside OUT/tensorboard, an unwritable TensorBoard folder said before any run, `profile` and
the in<C>/k<n> tokens of a name, a repeated or malformed smp dec token, `make install`
keeping a working venv when the lock does not install, gpu_check.sh when torch fails to
import."""
import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, tiny_sweep

import variants
from harness.cli import main
from harness.training import monitor

ROOT_USER = os.geteuid() == 0  # permissions do not stop root: those tests simulate the fault
SEED0 = ["--seeds", "1", "--no-progress", "-q"]


# --------------------------------------------------------------------------- 9: folders

LABELS = ["baseline", "up=bilinear", "up_bilinear", "α", "β", "..", ".", "", "a/b", "a/../..", "/abs",
          "x" * 300, "up_bilinear-78814648", ".hidden", "C:\\x"]


def test_tensorboard_folders_are_one_per_label_and_stay_inside(tmp_path):
    """Distinct (data set, variant, seed, fold) never share a folder, none leaves
    OUT/tensorboard or has a '.'/'..' part, and a plain label is kept as it is."""
    board = (tmp_path / "tensorboard").resolve()
    folders = {}
    for dataset in ("shapes", "sha/pes", ""):
        for variant in LABELS:
            for seed, fold in ((0, None), (0, 0), (1, None)):
                path = monitor.run_folder(tmp_path, dataset, variant, seed, fold)
                rel = path.relative_to(tmp_path / "tensorboard")
                assert len(rel.parts) == 3 and not {".", ".."} & set(rel.parts), path
                assert all(0 < len(part) <= 120 and not part.startswith(".") for part in rel.parts), path
                assert path.resolve().is_relative_to(board), path
                folders.setdefault(path, []).append((dataset, variant, seed, fold))
    assert all(len(v) == 1 for v in folders.values()), [v for v in folders.values() if len(v) > 1]
    kept = monitor.run_folder(tmp_path, "shapes", "up_bilinear", 2, 1)
    assert kept == tmp_path / "tensorboard" / "shapes" / "up_bilinear" / "seed2-fold1"
    assert monitor.folder_name("up=bilinear").startswith("up_bilinear-")


def test_a_sweep_writes_one_tensorboard_folder_per_variant_inside_its_folder(tmp_path):
    """`up=bilinear` and `up_bilinear`, `α` and `β`, and `..` (which wrote to
    tensorboard/seed0): each its own folder under tensorboard/shapes."""
    sweep = tmp_path / "s.toml"
    tiny_sweep(sweep, variants={"explicit": {"up_bilinear": "unet-w4-d2-relu6", "..": "unet-w4-d2-nobn",
                                             "α": "unet-w8-d2", "β": "unet-w4-d3"}})
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--tensorboard", "--out", str(out), *SEED0]) == 0
    runs = sorted((out / "tensorboard").glob("*/*/*"))
    assert len(runs) == 6 and all(r.relative_to(out / "tensorboard").parts[0] == "shapes" for r in runs)
    assert all(any(r.glob("events.out.tfevents.*")) for r in runs)
    assert sorted(p.name for p in (out / "tensorboard").iterdir()) == ["shapes"]


# --------------------------------------------------------------------------- 10: unwritable

def _read_only(monkeypatch, folder: Path) -> None:
    """``folder`` as on a read-only file system: no file or folder can be made in it."""
    if not ROOT_USER:
        folder.chmod(0o555)
        return
    import harness.fileio

    def refused(path):
        return Path(path).resolve().is_relative_to(folder.resolve())

    real_mkstemp, real_mkdir = harness.fileio.tempfile.mkstemp, os.mkdir

    def mkstemp(*a, dir=None, **kw):
        if dir is not None and refused(dir):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real_mkstemp(*a, dir=dir, **kw)

    def mkdir(path, *a, **kw):
        if refused(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *a, **kw)

    monkeypatch.setattr(harness.fileio.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "mkdir", mkdir)


def test_an_unwritable_tensorboard_folder_fails_before_any_run(fails_cleanly, tmp_path, monkeypatch):
    """It failed every run (`failed`, cause `run`) and exited 0."""
    sweep, out = tmp_path / "s.toml", tmp_path / "out"
    tiny_sweep(sweep)
    (out / "tensorboard").mkdir(parents=True)
    _read_only(monkeypatch, out / "tensorboard")
    try:
        fails_cleanly("run", sweep, "--tensorboard", "--out", out, *SEED0,
                      names=[out / "tensorboard", "--tensorboard", "expected a folder you can write to"],
                      untouched=[out])
    finally:
        (out / "tensorboard").chmod(0o755)
    assert not (out / "runs").exists()


def test_a_tensorboard_folder_a_run_cannot_make_warns_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    """Found only when a run starts (another runner's folder, a file system gone read-only):
    the run goes on without event files, as it does without checkpoints."""
    def refused(self, logdir):
        raise OSError(errno.EROFS, "Read-only file system", str(logdir))

    monkeypatch.setattr(monitor.TensorBoard, "__init__", refused)
    sweep, out = tmp_path / "s.toml", tmp_path / "out"
    tiny_sweep(sweep, variants={"one_factor": None})
    assert main(["run", str(sweep), "--tensorboard", "--out", str(out), "--seeds", "1", "--no-progress"]) == 0
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert [r["status"] for r in records] == ["ok"]
    err = capsys.readouterr().err
    assert "cannot be written (Read-only file system); this run goes on without event files" in err


# --------------------------------------------------------------------------- 15: profile

def _profile(capsys, *args) -> dict:
    assert main(["profile", *args, "--size", "32", "32", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_profile_takes_in_and_k_from_the_name(capsys):
    p = _profile(capsys, "unet-w4-d2-in1-k3")
    assert p["input_shape"] == [1, 1, 32, 32] and p["output_shape"] == [1, 3, 32, 32]
    p = _profile(capsys, "unet-w4-d2-in1-k3", "--in-channels", "1", "--classes", "3")  # the same: fine
    assert p["input_shape"] == [1, 1, 32, 32] and p["output_shape"] == [1, 3, 32, 32]
    p = _profile(capsys, "unet-w4-d2-k3", "--in-channels", "2")  # a flag fills what the name leaves out
    assert p["input_shape"] == [1, 2, 32, 32] and p["output_shape"] == [1, 3, 32, 32]
    p = _profile(capsys, "unet-w4-d2")  # else 3 and 1
    assert p["input_shape"] == [1, 3, 32, 32] and p["output_shape"] == [1, 1, 32, 32]
    p = _profile(capsys, "seed001")  # a preset: its own channels (1 in), which a flag overrides
    assert p["input_shape"] == [1, 1, 32, 32]
    assert _profile(capsys, "seed001", "--in-channels", "3")["input_shape"] == [1, 3, 32, 32]


@pytest.mark.parametrize("args,names", [
    (["unet-w4-d2-in1-k3", "--in-channels", "3"], ["--in-channels 3", "in1", "unet-w4-d2-in1-k3"]),
    (["unet-w4-d2-in1-k3", "--classes", "1"], ["--classes 1", "k3"]),
    (["smp-unet-resnet18-in1", "--in-channels", "2"], ["--in-channels 2", "in1"]),
])
def test_profile_flag_contradicting_the_name_is_one_line(fails_cleanly, args, names):
    fails_cleanly("profile", *args, names=names)


# --------------------------------------------------------------------------- 22, 25: smp tokens

@pytest.mark.parametrize("name,field", [
    ("smp-unet-resnet18-dec16.8.8.4.4-dec8.8.8.4.4", "decoder_channels"),
    ("smp-fpn-resnet18-dec64-dec32", "decoder_channels"),
    ("smp-unet-resnet18-in1-in2", "in_channels"),
    ("smp-unet-resnet18-k2-k3", "classes"),
])
def test_a_repeated_smp_token_is_refused_as_a_unet_one_is(fails_cleanly, name, field):
    with pytest.raises(ValueError, match=f"{field}: given twice in spec name"):
        variants.parse(name)
    fails_cleanly("profile", name, names=[f"{field}: given twice", name])
    assert variants.parse("smp-unet-resnet18-dec16.8.8.4.4-dec16.8.8.4.4").decoder_channels == (16, 8, 8, 4, 4)


@pytest.mark.parametrize("token", ["decX", "dec", "dec16..8", "dec16,8", "dec16.8."])
def test_a_malformed_smp_dec_token_names_the_token_not_the_encoder(fails_cleanly, token):
    err = fails_cleanly("profile", f"smp-unet-resnet18-{token}", names=[repr(token), "dec<n>[.<n>...]"])
    assert "encoder" not in err, err


# --------------------------------------------------------------------------- 16: make install

FAKE_PYTHON = """\
#!/bin/sh
# `PYTHON -m venv [--clear] DIR`: DIR/bin/pip, which refuses a lock holding a conflict marker
[ "$1 $2" = "-m venv" ] || exit 3
shift 2
if [ "$1" = --clear ]; then shift; rm -rf "$1"; fi
mkdir -p "$1/bin"
cat > "$1/bin/pip" <<'EOF'
#!/bin/sh
prev=
for a; do
  if [ "$prev" = -r ] && grep -q '^<<<<<<<' "$a"; then echo "ERROR: Invalid requirement: '<<<<<<< HEAD'" >&2; exit 1; fi
  prev=$a
done
EOF
chmod +x "$1/bin/pip"
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_install_keeps_the_working_venv_when_the_lock_does_not_install(tmp_path):
    """A merge-conflict marker in the lock: the venv that worked is still there, whole; a
    good lock then replaces it, nothing left beside it."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    python = tmp_path / "fake-python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "unet-ablate").write_text("#!/bin/sh\n")
    (venv / "working").write_text("the old venv")
    os.utime(venv / "bin" / "unet-ablate", (1_000_000_000, 1_000_000_000))
    (tmp_path / "requirements.lock").write_text("<<<<<<< HEAD\nnumpy==1.0 \\\n    --hash=sha256:00\n=======\n")

    def install():
        return subprocess.run(["make", "install", f"PYTHON={python}"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)

    r = install()
    assert r.returncode != 0 and "Invalid requirement" in r.stderr, r.stdout + r.stderr
    assert (venv / "working").read_text() == "the old venv"
    assert (venv / "bin" / "unet-ablate").stat().st_mtime == 1_000_000_000  # the stamp too
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".venv")) == [".venv"]
    (tmp_path / "requirements.lock").write_text("numpy==1.0 \\\n    --hash=sha256:00\n")
    r = install()
    assert r.returncode == 0, r.stdout + r.stderr
    assert (venv / "bin" / "unet-ablate").is_file() and not (venv / "working").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".venv")) == [".venv"]


# --------------------------------------------------------------------------- 25: gpu_check.sh

@pytest.mark.parametrize("torch_init,says", [
    ("raise ImportError('libcudart.so.12: cannot open shared object file: No such file or directory')",
     "torch failed to import (ImportError: libcudart.so.12: cannot open shared object file"),
    ("class cuda:\n    is_available = staticmethod(lambda: False)",
     "no CUDA device here (torch.cuda.is_available() is False)"),
])
def test_gpu_check_says_why_it_cannot_check(tmp_path, torch_init, says):
    (tmp_path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "gpu_check.sh", tmp_path / "tools" / "gpu_check.sh")
    (tmp_path / "fake" / "torch").mkdir(parents=True)
    (tmp_path / "fake" / "torch" / "__init__.py").write_text(torch_init + "\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    py = tmp_path / ".venv" / "bin" / "python"
    py.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        PYTHONPATH={tmp_path / 'fake'} exec {sys.executable} -S "$@"
        """))
    py.chmod(0o755)
    r = subprocess.run(["bash", "tools/gpu_check.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "OUT": str(tmp_path / "out")})
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("gpu-check: with .venv/bin/python, ") and r.stderr.count("\n") == 1, r.stderr
    assert says in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
