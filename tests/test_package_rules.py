"""Rules that keep the package thin and its parts separate (see CONTRIBUTING.md), checked on the
source."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vae_overlay"
MODULES = sorted(PACKAGE.glob("*.py"))
TESTS = sorted((ROOT / "tests").glob("*.py"))
MAX_CELL_LINES = 25


def private_uses(path: Path) -> list[str]:
    """`from x import _name` and `module._name` where module is a vae_overlay module imported in
    `path`."""
    tree = ast.parse(path.read_text())
    own, found = set(), []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("vae_overlay")
        ):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                own.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            own.update(
                alias.asname or alias.name
                for alias in node.names
                if alias.name.startswith("vae_overlay")
            )
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in own
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "setattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and str(node.args[1].value).startswith("_")
        ):
            found.append(f"line {node.lineno}: patches private {node.args[1].value}")
    return found


@pytest.mark.parametrize("path", MODULES + TESTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_private_name_is_used_across_modules(path):
    assert private_uses(path) == []


@pytest.mark.parametrize("path", TESTS, ids=lambda p: p.name)
def test_no_test_imports_another_test_file(path):
    imported = {
        alias.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not {name for name in imported if name.split(".")[0].startswith(("test_", "conftest"))}


def test_ruff_finds_nothing_and_the_code_is_formatted():
    """The size rules are per function (ruff's C901, PLR0912, PLR0915 in pyproject.toml) and per
    line (100 characters), with the formatter's layout: `ruff check` and `ruff format --check`
    pass."""
    paths = ["src", "tests", "benchmarks"]
    ruff = [sys.executable, "-m", "ruff"]
    checked = subprocess.run([*ruff, "check", *paths], cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    formatted = subprocess.run(
        [*ruff, "format", "--check", *paths], cwd=ROOT, capture_output=True, text=True
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_code_cells_are_short(path):
    cells = json.loads(path.read_text())["cells"]
    long = {
        number: len("".join(cell["source"]).splitlines())
        for number, cell in enumerate(cells)
        if cell["cell_type"] == "code"
        and len("".join(cell["source"]).splitlines()) > MAX_CELL_LINES
    }
    assert long == {}, f"code cells over {MAX_CELL_LINES} lines (cell index: lines)"


def test_nothing_refers_to_files_outside_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = ["DESIGN" + ".md", "STYLE" + ".md", "BROWSER_TESTING" + ".md", "../" + "shared"]
    hits = []
    for name in tracked:
        path = ROOT / name
        if (
            path.suffix in (".py", ".md", ".ipynb", ".txt", ".toml", ".yml", ".cfg")
            or path.name == "Makefile"
        ):
            text = path.read_text(errors="replace")
            hits += [f"{name}: {word}" for word in outside if word in text]
    assert hits == []


def imported_modules(path: Path) -> set[str]:
    """The vae_overlay modules `path` imports, at module level or inside functions
    (`import vae_overlay.x`, `from vae_overlay import x`, `from vae_overlay.x import y`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(
                alias.name.split(".")[1]
                for alias in node.names
                if alias.name.startswith("vae_overlay.")
            )
        elif isinstance(node, ast.ImportFrom) and node.module == "vae_overlay":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vae_overlay."):
            found.add(node.module.split(".")[1])
    return found & {module.stem for module in MODULES}


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` (module -> the modules it imports) as [a, b, ..., a]; [] if none."""
    finished: set[str] = set()

    def visit(module: str, stack: list[str]) -> list[str]:
        if module in stack:
            return stack[stack.index(module) :] + [module]
        if module in finished:
            return []
        for other in sorted(graph[module]):
            cycle = visit(other, stack + [module])
            if cycle:
                return cycle
        finished.add(module)
        return []

    return next((cycle for module in sorted(graph) if (cycle := visit(module, []))), [])


def test_import_cycle_finder_finds_a_cycle():
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": set()}) == []


def test_package_imports_point_down():
    """No module imports, itself or through others, a module that imports it: layers point down."""
    graph = {path.stem: imported_modules(path) - {path.stem} for path in MODULES}
    cycle = import_cycle(graph)
    assert cycle == [], f"import cycle: {' -> '.join(cycle)}"


def test_the_domain_modules_never_import_the_study_runner():
    """A study kind is a plug-in of the runner (it imports study.py); the pieces it runs do not."""
    domain = (
        "runs",
        "data",
        "datasets",
        "elpv",
        "synth",
        "model",
        "train",
        "overlay",
        "classifier",
    )
    assert {name for name in domain if "study" in imported_modules(PACKAGE / f"{name}.py")} == set()
