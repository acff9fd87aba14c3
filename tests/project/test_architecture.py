"""The house rules a reviewer would otherwise check by hand: the layout of ``newsletter/``,
a concern docstring per package, and imports at the top of their modules."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "newsletter"

# The composition root: the only modules beside the packages.
ROOT_MODULES = {"__init__.py", "app.py", "settings.py", "wsgi.py"}

# Functions allowed to import project code late, and why: the app factory behind
# ``newsletter.create_app`` (importing the app at package import would load everything for
# ``import newsletter.settings``) and the CLI's app loader (``newsletter --help`` builds no app).
LATE_IMPORTS_ALLOWED = {
    ("newsletter/__init__.py", "create_app"),
    ("newsletter/cli/__init__.py", "create_cli_app"),
}


def _sources() -> list[Path]:
    """Every Python module of the product, migrations' generated revisions aside."""
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "worker").rglob("*.py")]
    return sorted(p for p in files if "versions" not in p.parts)


def _late_project_imports(path: Path) -> list[tuple[str, int, str]]:
    """(function, line, module) for each project import inside a function of ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom) and inner.level == 0:
                modules = [inner.module or ""]
            elif isinstance(inner, ast.Import):
                modules = [alias.name for alias in inner.names]
            else:
                continue
            for module in modules:
                if module.split(".")[0] in {"newsletter", "worker"}:
                    found.append((node.name, inner.lineno, module))
    return found


def test_newsletter_holds_only_packages_and_the_composition_root() -> None:
    modules = {p.name for p in PACKAGE.glob("*.py")}
    assert modules == ROOT_MODULES


def test_every_package_says_its_concern_in_its_docstring() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(ROOT)} has no docstring"
        assert len(doc.strip().splitlines()) >= 2, f"{init.relative_to(ROOT)}: say it in two lines"


def test_no_project_import_inside_a_function_outside_the_factories() -> None:
    late = []
    for path in _sources():
        name = path.relative_to(ROOT).as_posix()
        for function, line, module in _late_project_imports(path):
            if (name, function) not in LATE_IMPORTS_ALLOWED:
                late.append(f"{name}:{line} {function}() imports {module}")
    assert late == [], "move these imports to the top of their modules:\n" + "\n".join(late)


def test_the_late_import_check_sees_an_import_in_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from newsletter.store import db\n    import worker.tasks\n")
    assert [m for _, _, m in _late_project_imports(module)] == ["newsletter.store", "worker.tasks"]


def _contract_layers() -> list[set[str]]:
    """The layers of the import-linter contract in pyproject.toml, top to bottom."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    return [{name.strip() for name in layer.split("|")} for layer in contract["layers"]]


def _readme_layers() -> list[set[str]]:
    """The layers of the tree in the README's architecture section, top to bottom."""
    section = (ROOT / "README.md").read_text().split("## Architecture", 1)[1]
    tree = section.split("```", 2)[1]
    layers = []
    for line in tree.splitlines():
        match = re.match(r"^[├└]── (.+?)\s{2,}", line)
        if match:
            names = [n.strip() for n in match.group(1).split("·")]
            layers.append({_dotted(n) for n in names})
    return layers


def _dotted(name: str) -> str:
    """``web/`` → newsletter.web, ``app.py`` → newsletter.app, ``worker/`` → worker."""
    stem = name.removesuffix("/").removesuffix(".py")
    return stem if stem == "worker" else f"newsletter.{stem}"


def test_every_package_is_a_layer_of_the_import_contract() -> None:
    layered = set().union(*_contract_layers())
    packages = {f"newsletter.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    modules = {f"newsletter.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert packages | modules | {"worker"} == layered


def test_the_readme_shows_the_layers_of_the_contract() -> None:
    assert _readme_layers() == _contract_layers()


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others() -> None:
    assert _cycles(grimp.build_graph("newsletter", "worker")) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(name)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.x")
    graph.add_import(importer="a.z", imported="a.x")
    assert _cycles(graph) == [["a.x", "a.y"]]
