"""The common layer's import graph stays acyclic and never imports upward.

The graph is read from the source (tests/support/layers.py). The layers, lowest first:

    base      okyaku, errors, config, features, logs, coldstart, clock, validation
    db        okyaku.db (the migrations may import okyaku.db.rls and nothing else of okyaku)
    platform  events, tenancy, runtime, aws, lambda_events, queue, fanout
    domain    the domain packages, in DOMAIN_ORDER (a package imports only those before it)
    http      okyaku.http, the domain packages' HTTP adapters (their ``api``/``web`` modules), console
    entry     okyaku.entry and the domain packages' function wiring (their ``function`` modules)
    top       local (the dev runner), cli, openfaas (which imports neither local nor cli)

A module may import its own layer (acyclically) and those below it. Run
``python -m tests.unit.test_layers [--root shared/okyaku]`` to print the cycles and the imports
against the order.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.layers import (
    ALL_KINDS,
    PACKAGE_ROOT,
    Import,
    all_imports,
    cycle_text,
    elementary_cycles,
    import_graph,
    module_files,
    print_cycles,
)

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    # clock and validation: refactor-b's one helper per idea (utc_now; pydantic errors -> details).
    ("base", frozenset({"", "errors", "config", "features", "logs", "coldstart", "clock", "validation"})),
    ("db", frozenset({"db"})),
    # queue: the one SQS batch consumer (Powertools partial batches), under entry and the domains.
    ("platform", frozenset({"events", "tenancy", "runtime", "aws", "lambda_events", "queue", "fanout"})),
    ("domain", frozenset()),  # DOMAIN_ORDER
    # console: the web console, which composes the domains' routes and services.
    ("http", frozenset({"http", "console"})),
    ("entry", frozenset({"entry"})),
    ("top", frozenset({"local", "cli", "openfaas"})),
)
# Domain packages, lowest first: each may import those before it, never one after it. The records
# come first; the LLM gateway under everything that prompts; chat and then mcp last, as they draw on the others.
DOMAIN_ORDER = (
    "crm",
    "email",  # outgoing e-mail: the outbox over crm's activities; agents' approvals and anomalies use it
    "llm",
    "content",
    "embeddings",
    "rag",
    "predictions",
    "agents",
    "conversation",
    "recommendations",
    "anomalies",
    "mailboxes",  # a user's IMAP mailbox into activities: the CRM, the approval queue, notifications
    "chat",
    "mcp",  # the MCP server: external agents' door to the domains above (chat's questions included)
)
# A domain package's modules with these names are its adapters: routes above okyaku.http, and
# the wiring of a function above okyaku.entry.
HTTP_ADAPTERS = frozenset({"api", "web", "imports_api", "access_api"})
FUNCTION_WIRING = frozenset({"function"})
# Within a layer: the OpenFaaS adapters ship in every OpenFaaS function, the dev tools do not.
MAY_NOT_IMPORT: dict[str, frozenset[str]] = {"openfaas": frozenset({"local", "cli"})}
MIGRATIONS = "okyaku.db.migrations.versions."
MIGRATIONS_MAY_IMPORT = frozenset({"okyaku.db.rls"})

# Cycles that exist today; this list may only shrink. (refactor-b removed the last two:
# predictions scoring <-> training and agents approvals <-> framework.)
KNOWN_CYCLES: frozenset[tuple[str, ...]] = frozenset()

LAYER_NAMES = tuple(name for name, _ in LAYERS)


def package_of(module: str) -> str:
    """``okyaku.crm.api`` -> ``crm``; the package itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str) -> str | None:
    package = package_of(module)
    if package in DOMAIN_ORDER:
        leaf = module.rsplit(".", 1)[-1] if module.count(".") >= 2 else ""
        if leaf in HTTP_ADAPTERS:
            return "http"
        if leaf in FUNCTION_WIRING:
            return "entry"
        return "domain"
    return next((name for name, packages in LAYERS if package in packages), None)


def upward_imports(imports: list[Import]) -> list[tuple[Import, str]]:
    """Every import that breaks the layer order, with the reason."""
    found: list[tuple[Import, str]] = []
    for edge in imports:
        source_layer, target_layer = layer_of(edge.source), layer_of(edge.target)
        if source_layer is None or target_layer is None:
            unknown = edge.source if source_layer is None else edge.target
            found.append((edge, f"{package_of(unknown)!r} is in no layer: add it to LAYERS or DOMAIN_ORDER"))
            continue
        if edge.source.startswith(MIGRATIONS) and edge.target not in MIGRATIONS_MAY_IMPORT:
            found.append((edge, "a migration is frozen: inline what it needs instead of importing it"))
        if LAYER_NAMES.index(source_layer) < LAYER_NAMES.index(target_layer):
            found.append((edge, f"{source_layer} imports {target_layer}, a layer above it"))
            continue
        source_package, target_package = package_of(edge.source), package_of(edge.target)
        if target_package in MAY_NOT_IMPORT.get(source_package, frozenset()):
            found.append((edge, f"{source_package} may not import {target_package}"))
        if (
            source_package != target_package
            and source_package in DOMAIN_ORDER
            and target_package in DOMAIN_ORDER
            and DOMAIN_ORDER.index(source_package) < DOMAIN_ORDER.index(target_package)
        ):
            found.append((edge, f"domain {source_package} imports {target_package}, which comes after it"))
    return found


def test_every_module_is_in_a_layer() -> None:
    unplaced = sorted({package_of(m) for m in module_files() if layer_of(m) is None})
    assert unplaced == [], f"packages in no layer (add them to LAYERS or DOMAIN_ORDER): {unplaced}"


def test_no_import_goes_up_a_layer() -> None:
    upward = upward_imports(all_imports())
    assert upward == [], "upward imports:\n" + "\n".join(f"  {edge}: {why}" for edge, why in upward)


def test_the_import_graph_has_no_cycles_but_the_known_ones() -> None:
    # TYPE_CHECKING edges count: a cycle only the type checker sees is still one module knowing
    # another that knows it.
    cycles = set(elementary_cycles(import_graph(all_imports(), ALL_KINDS)))
    new = sorted(cycles - KNOWN_CYCLES)
    fixed = sorted(KNOWN_CYCLES - cycles)
    assert new == [], "new import cycles:\n" + "\n".join(f"  {cycle_text(c)}" for c in new)
    assert fixed == [], "cycles gone, remove them from KNOWN_CYCLES:\n" + "\n".join(f"  {cycle_text(c)}" for c in fixed)


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "okyaku"
    for name, source in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return package


def test_the_reader_sees_every_kind_of_import_and_resolves_names_to_modules(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "",
            "crm/__init__.py": "from okyaku.crm.schemas import Contact\n",
            "crm/schemas.py": "",
            "crm/api.py": """
                from typing import TYPE_CHECKING
                import okyaku.errors
                from okyaku.crm import schemas
                from . import schemas as again
                from .schemas import Contact
                import json

                if TYPE_CHECKING:
                    from okyaku.llm.gateway import Gateway

                def handler():
                    from okyaku.llm import gateway
                    return gateway
            """,
            "llm/__init__.py": "",
            "llm/gateway.py": "",
        },
    )
    edges = {(e.source, e.target, e.kind) for e in all_imports(package)}
    assert edges == {
        ("okyaku.crm", "okyaku.crm.schemas", "module"),
        ("okyaku.crm.api", "okyaku.errors", "module"),
        ("okyaku.crm.api", "okyaku.crm.schemas", "module"),
        ("okyaku.crm.api", "okyaku.llm.gateway", "type_checking"),
        ("okyaku.crm.api", "okyaku.llm.gateway", "deferred"),
    }


def test_cycles_are_found_through_deferred_and_type_checking_imports(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import okyaku.b\n",
            "b.py": "def later():\n    import okyaku.c\n",
            "c.py": "import okyaku.a\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import okyaku.d\n",
            "d.py": "from okyaku import c\n",
            "e.py": "import okyaku.a\n",
        },
    )
    imports = all_imports(package)
    assert elementary_cycles(import_graph(imports)) == [("okyaku.a", "okyaku.b", "okyaku.c")]
    assert elementary_cycles(import_graph(imports, ALL_KINDS)) == [
        ("okyaku.c", "okyaku.d"),
        ("okyaku.a", "okyaku.b", "okyaku.c"),
    ]


@pytest.mark.parametrize(
    ("source", "target", "reason"),
    [
        ("okyaku.db.models", "okyaku.crm.schemas", "db imports domain"),
        ("okyaku.crm.records", "okyaku.http", "domain imports http"),  # services know nothing of HTTP
        ("okyaku.http", "okyaku.entry", "http imports entry"),
        ("okyaku.agents.api", "okyaku.agents.function", "http imports entry"),
        ("okyaku.llm.gateway", "okyaku.agents.framework", "domain llm imports agents"),
        ("okyaku.openfaas", "okyaku.local.runner", "openfaas may not import local"),
        ("okyaku.db.migrations.versions.0009_x", "okyaku.db.models", "a migration is frozen"),
        ("okyaku.widgets.core", "okyaku.errors", "'widgets' is in no layer"),
    ],
)
def test_imports_against_the_order_are_refused(source: str, target: str, reason: str) -> None:
    ((_edge, why),) = upward_imports([Import(source, target, 1, "module")])
    assert why.startswith(reason)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("okyaku.crm.api", "okyaku.http"),  # a domain's routes sit on okyaku.http
        ("okyaku.agents.function", "okyaku.agents.api"),
        ("okyaku.agents.tools.records", "okyaku.crm.records"),
        ("okyaku.rag.context", "okyaku.embeddings.search"),
        ("okyaku.entry", "okyaku.logs"),
        ("okyaku.openfaas", "okyaku.lambda_events"),
        ("okyaku.local.runner", "okyaku.crm.records"),
        ("okyaku.db.migrations.versions.0009_x", "okyaku.db.rls"),
    ],
)
def test_imports_along_the_order_are_allowed(source: str, target: str) -> None:
    assert upward_imports([Import(source, target, 1, "module")]) == []


def main(argv: list[str] | None = None) -> int:
    """Prints the cycles and the upward imports of this checkout (or of ``--root``)."""
    parser = argparse.ArgumentParser(description="Import cycles and upward imports of the okyaku package")
    parser.add_argument("--root", type=Path, default=PACKAGE_ROOT, help="the okyaku package folder to read")
    imports = all_imports(parser.parse_args(argv).root)
    runtime, type_only = print_cycles(imports)
    upward = upward_imports(imports)
    print(f"{len(upward)} imports against the layer order")
    for edge, why in upward:
        print(f"  {edge}: {why}")
    return 1 if runtime or type_only or upward else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
