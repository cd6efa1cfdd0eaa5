"""The import rules of STYLE.md ("Rules of direction"), checked by parsing the sources."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "taskd"
FOUNDATION = {"errors", "model", "keys", "config", "log", "paging", "workflow"}


def imports_of(path: Path) -> set[str]:
    """Top-level module names (and taskd submodules) a file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules() -> dict[str, set[str]]:
    """taskd module name (relative, dotted) -> its imports."""
    return {
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts): imports_of(p)
        for p in PACKAGE.rglob("*.py")
    }


def test_only_store_imports_redis() -> None:
    """No module but store talks to Redis directly."""
    offenders = [
        m
        for m, imps in modules().items()
        if m.split(".")[0] != "store" and any(i == "redis" or i.startswith("redis.") for i in imps)
    ]
    assert offenders == []


def test_foundation_imports_only_stdlib_orjson_structlog() -> None:
    """errors, model, keys, config, log and paging depend on nothing heavy."""
    allowed_third_party = {"orjson", "structlog"}
    for name, imps in modules().items():
        if name.split(".")[0] not in FOUNDATION:
            continue
        for imp in imps:
            root = imp.split(".")[0]
            if root == "taskd":
                assert imp.removeprefix("taskd.").split(".")[0] in FOUNDATION, (name, imp)
            else:
                assert root in allowed_third_party or _is_stdlib(root), (name, imp)


def test_core_never_imports_the_http_layer() -> None:
    """Nothing outside taskd/http (and the composition root) imports aiohttp.web or http."""
    for name, imps in modules().items():
        if name.split(".")[0] in {"http", "handlers", "daemon", "cli"}:
            continue
        assert not any(i.startswith(("taskd.http", "aiohttp")) for i in imps), name


def test_http_layer_never_imports_redis_or_store_internals() -> None:
    """The HTTP layer goes through the engine, never redis."""
    for name, imps in modules().items():
        if name.startswith("http"):
            assert not any(i.split(".")[0] == "redis" for i in imps), name


def _is_stdlib(name: str) -> bool:
    return name in sys.stdlib_module_names or name == "__future__"


def test_engine_never_imports_http_cli_or_daemon() -> None:
    """The worker side (taskd/engine) depends on store and foundation, never on its users."""
    for name, imps in modules().items():
        if name.split(".")[0] != "engine":
            continue
        for imp in imps:
            assert not imp.startswith(("taskd.http", "taskd.cli", "taskd.daemon", "aiohttp")), (
                name,
                imp,
            )


def test_only_the_composition_root_and_cli_import_the_daemon() -> None:
    """taskd/daemon wires everything; nothing it wires may reach back into it."""
    for name, imps in modules().items():
        if name.split(".")[0] in {"daemon", "cli"}:
            continue
        assert not any(i.startswith("taskd.daemon") for i in imps), name
