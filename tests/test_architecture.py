"""The library's layout rules, checked on its source: one job per module.

- No module imports another module's private (``_underscored``) name.
- No import circle between the library's modules, counting imports made
  only for type checking and imports inside functions.
- No module much over 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "django_eventlog"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the library."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str], int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return found


def resolve(module: str, names: list[str], known: dict[str, Path]) -> set[str]:
    """The library modules an import reaches (``from . import x`` reaches x)."""
    reached = {f"{module}.{n}" for n in names if f"{module}.{n}" in known}
    if module in known and (not names or len(reached) < len(names)):
        reached.add(module)
    return reached


def test_the_rules_see_the_library() -> None:
    known = modules()
    assert {"django_eventlog.store", "django_eventlog.models"} <= set(known)
    writes_imports = {
        target
        for module, names, _ in imports(
            "django_eventlog.writes", known["django_eventlog.writes"]
        )
        for target in resolve(module, names, known)
    }
    assert "django_eventlog.sql" in writes_imports


def test_no_module_imports_a_private_name_of_another() -> None:
    known = modules()
    offences = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}.{imported}"
        for name, path in known.items()
        for module, names, line in imports(name, path)
        if module.startswith("django_eventlog") and module != name
        for imported in names
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert offences == []


def test_no_import_circle() -> None:
    known = modules()
    graph = {
        name: {
            target
            for module, names, _ in imports(name, path)
            for target in resolve(module, names, known)
            # The package's face re-exports its modules' names by design.
            if target not in (name, "django_eventlog")
        }
        for name, path in known.items()
        if name != "django_eventlog"
    }
    circles = []
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in visiting:
            circles.append(" -> ".join([*visiting[visiting.index(node) :], node]))
            return
        if node in done:
            return
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            visit(target)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert circles == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_much_over_400_lines(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"
