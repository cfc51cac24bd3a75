"""The package's data path reads one way: command line -> metrics -> pipeline -> API -> records ->
store.

A sub-package imports only those after it in that order, plus the shared modules (errors,
settings, the apps file, the pure planner and lateness measure, logging set-up, the heap's
settings and the pure talents rules). The sandbox stands apart: it imports nothing of the
client, and only the demo command and the tests start it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SYNC = Path(__file__).resolve().parent.parent / "sync"

# Earlier may import later, never the other way round.
ORDER = ["cli", "queue", "metrics", "pipeline", "api", "records", "db"]
SHARED = {
    "errors", "settings", "apps", "toml_values", "planner", "lateness", "logs", "talents",
    "heap", "__version__",
}  # fmt: skip


def _imports(path: Path) -> set[str]:
    """The `sync.<part>` names a module imports (the first component after `sync`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] != "sync":
                continue
            if len(parts) > 1:
                found.add(parts[1])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "sync" and len(parts) > 1:
                    found.add(parts[1])
    return found


def _modules(part: str) -> list[Path]:
    where = SYNC / part
    return sorted(where.rglob("*.py")) if where.is_dir() else [SYNC / f"{part}.py"]


@pytest.mark.parametrize("layer", ORDER)
def test_a_layer_imports_only_those_after_it(layer: str) -> None:
    """No sub-package reaches back up the data path (nor into the sandbox)."""
    allowed = {layer, *SHARED, *ORDER[ORDER.index(layer) + 1 :]}
    if layer == "cli":
        allowed.add("sandbox")  # the demo command serves the sandbox
    wrong = {
        f"{path.relative_to(SYNC)} imports sync.{name}"
        for path in _modules(layer)
        for name in _imports(path) - allowed
    }
    assert not wrong, sorted(wrong)


def test_shared_modules_and_the_sandbox_import_no_layer() -> None:
    """errors, settings, apps, planner, logs, talents and the sandbox depend on no layer of the
    path."""
    wrong = {
        f"{path.relative_to(SYNC)} imports sync.{name}"
        for part in [
            "errors",
            "settings",
            "apps",
            "toml_values",
            "planner",
            "lateness",
            "logs",
            "talents",
            "heap",
            "sandbox",
        ]
        for path in _modules(part)
        for name in _imports(path) & set(ORDER)
    }
    assert not wrong, sorted(wrong)
