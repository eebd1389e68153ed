"""The layers of the code stay apart: ``variants`` (WHAT is compared) never imports ``harness``
(HOW it is compared), the report never imports training or data loading, no two modules
import each other (directly or round a loop), and the registries that build modules name
exactly the values a spec accepts. Read from the source (``ast``), so a lazy import inside a
function counts as much as one at the top."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "variants")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            out |= {id(n) for n in ast.walk(node)}
    return out


def imports(name: str) -> set[str]:
    """The project modules that module ``name`` imports, anywhere in it. ``from pkg import
    sub`` counts as importing ``pkg.sub`` (a package importing its own modules is no loop)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            subs = {f"{target}.{a.name}" for a in node.names} & MODULES.keys()
            out |= subs or {target}
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: imports(name) for name in MODULES}


def test_variants_never_imports_harness():
    for name in (m for m in MODULES if m.startswith("variants")):
        assert not {m for m in GRAPH[name] if m.startswith("harness")}, name


def test_no_two_modules_import_each_other_round_a_loop():
    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in GRAPH[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    loops = sorted(name for name in MODULES if name in reach(name))
    assert loops == [], f"import loops through {loops}"


# The stages of harness/, in pipeline order: each may import the helpers at the top of
# harness/ and the stages it lists (DESIGN.md, "harness/ by stage"); the report reads the
# store alone, and only the command line sees everything.
HELPERS = {"harness", "harness.config", "harness.fileio", "harness.metrics"}
STAGES = {
    "harness.data": set(),
    "harness.spec": {"harness.data"},
    "harness.store": {"harness.spec"},
    "harness.training": {"harness.data", "harness.spec", "harness.store"},
    "harness.scheduling": {"harness.data", "harness.spec", "harness.store", "harness.training"},
    "harness.report": {"harness.spec", "harness.store"},
    "harness.sweeps": set(),
}
TOP = {"harness.cli", "harness.__main__"}


def stage_of(module: str) -> str:
    """The stage (or helper, or top) a module of harness/ belongs to."""
    if module in HELPERS or module in TOP:
        return module
    return ".".join(module.split(".")[:2])


def test_each_stage_imports_only_the_stages_before_it():
    wrong = []
    for name, deps in GRAPH.items():
        if not name.startswith("harness") or name in TOP or name in HELPERS:
            if name in HELPERS:
                wrong += [f"{name} -> {d}" for d in deps if d.startswith("harness") and d not in HELPERS]
            continue
        own, allowed = stage_of(name), STAGES[stage_of(name)]
        wrong += [f"{name} -> {d}" for d in deps
                  if d.startswith("harness") and stage_of(d) not in allowed | HELPERS | {own}]
    assert wrong == []


def test_harness_keeps_few_modules_at_its_top_and_every_stage_is_known():
    top = sorted(p.name for p in (ROOT / "harness").glob("*.py"))
    assert len(top) <= 8, top
    assert {f"harness.{p.stem}" for p in (ROOT / "harness").glob("*.py")} <= HELPERS | TOP | {"harness.__init__"}
    packages = {f"harness.{p.parent.name}" for p in (ROOT / "harness").glob("*/__init__.py")}
    assert packages == set(STAGES)


@pytest.mark.parametrize("package", ["harness", *STAGES])
def test_each_package_docstring_names_each_of_its_modules(package):
    """The module map at the head of each package (harness/'s names its stages and helpers)."""
    folder = ROOT / Path(*package.split("."))
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    if package == "harness.sweeps":
        return  # presets (TOML), no modules
    names = {p.stem for p in folder.glob("*.py") if p.stem not in ("__init__", "__main__")}
    names |= {p.parent.name + "/" for p in folder.glob("*/__init__.py")}
    missing = sorted(n for n in names if not re.search(rf"(?m)^\s+{re.escape(n)}\s", doc))
    assert missing == [], f"{package}'s docstring does not name {missing}"


def test_the_report_loads_neither_training_nor_data():
    """In one fresh interpreter (each costs seconds): importing the report loads none of them."""
    banned = ["harness.training.train", "harness.data.loader", "harness.scheduling.one_run",
              "harness.scheduling.dispatch"]
    code = ("import sys, harness.report, harness.report.build; "
            f"print([m for m in {banned!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_spec_imports_no_torch_and_no_models():
    assert GRAPH["variants.spec"] == set()
    tree = ast.parse(MODULES["variants.spec"].read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "torch" not in names


def test_the_registries_build_exactly_the_values_a_spec_accepts():
    from variants.blocks import ACTIVATIONS, NORMS, UPSAMPLING
    from variants.spec import AXES
    from variants.unet import TOPOLOGIES

    assert AXES["act"] == tuple(ACTIVATIONS) and AXES["norm"] == tuple(NORMS)
    assert AXES["up"] == tuple(UPSAMPLING) and AXES["topology"] == tuple(TOPOLOGIES)


def test_one_module_spells_the_results_folder():
    """Only ``harness.store.layout`` names the entries of a results folder as path parts."""
    entries = ('"runs"', '"samples"', '"claims"', '"checkpoints"', '"submitit"', '"sweep.json"', '"runs.csv"')
    for name, path in MODULES.items():
        if name in ("harness.store.layout", "harness.report.tables", "harness.report.suite", "harness.report.build"):
            continue  # (the report's own runs.csv is the report folder's)
        text = path.read_text()
        for entry in entries:
            assert f"/ {entry}" not in text, f"{name} spells {entry}"


def test_modules_and_functions_stay_small():
    """No module of harness/ or variants/ over 400 lines, no function over 60 (the argument
    parser aside): past that, a module or function is doing more than one job."""
    long_modules, long_functions = [], []
    for name, path in MODULES.items():
        text = path.read_text()
        if text.count("\n") > 400:
            long_modules.append(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "build_parser":
                if node.end_lineno - node.lineno + 1 > 60:
                    long_functions.append(f"{name}.{node.name}")
    assert long_modules == [] and long_functions == []


@pytest.mark.parametrize("entry", ["runs", "samples", "claims", "checkpoints", "submitit"])
def test_a_file_where_a_folder_of_the_results_belongs_fails_before_anything_is_written(fails_cleanly, tmp_path,
                                                                                      entry):
    out = tmp_path / "out"
    out.mkdir()
    (out / entry).write_text("not a folder")
    fails_cleanly("run", "smoke", "--out", out, names=[out / entry, "is a file"], untouched=[out])


@pytest.mark.parametrize("key", ["../victim", "/etc/x", "a/b", "", ".hidden"])
def test_a_key_that_is_a_path_names_no_file(tmp_path, key):
    from harness.store.layout import Layout

    for where in (Layout(tmp_path).record, Layout(tmp_path).claim, Layout(tmp_path).checkpoint,
                  Layout(tmp_path).samples):
        with pytest.raises(ValueError, match="expected a plain name"):
            where(key)
