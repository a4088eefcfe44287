"""What each function's cold start imports (issue 27): ``import app`` in a fresh interpreter, as a
Lambda cold start does, for every function of template.yaml (new ones included), and the heavy
packages that must not be among its modules. No timing here: ``python -m bench cold_start``
measures; this catches a module-level import that brings a heavy package back.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import APIRouter

from okyaku.local.template import parse_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = parse_template(ROOT / "template.yaml")

# Never at any function's cold start: imported where they are used (the trainer, the series
# detector, the LLM gateway's first call, the console's first render, an AWS client's first call).
HEAVY = (
    "sklearn",
    "scipy",
    "statsmodels",
    "pandas",
    "ruptures",
    "jinja2",
    "openai",
    "boto3",
    "botocore",
    "mcp",  # the MCP SDK: McpFunction imports it at its first request
)
# numpy: scoring and forecasting compute with it on nearly every route and message.
NUMPY_AT_COLD_START = {"ScoringFunction", "ForecastingFunction"}
# Whole features a function must not load because a module it shares imports them eagerly.
FOREIGN_FEATURES = {
    "ChatFunction": ("okyaku.agents.approvals", "okyaku.agents.framework", "okyaku.agents.tools.read"),
    "ConsoleFunction": (
        "okyaku.chat.service",
        "okyaku.agents.approvals",
        "okyaku.agents.service",
        "okyaku.predictions.service",
        "okyaku.recommendations.service",
    ),
}
LOADED = "import json, sys, app; print(json.dumps(sorted(sys.modules)))"


def cold_modules(code_dir: Path) -> set[str]:
    environment = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "shared"), str(ROOT)])
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", LOADED], cwd=code_dir, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.splitlines()[-1]))


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("function_id", sorted(TEMPLATE.functions))
def test_a_cold_start_imports_no_heavy_package_it_does_not_need(function_id: str) -> None:
    modules = cold_modules(TEMPLATE.functions[function_id].code_dir)
    assert "okyaku" in top_level(modules)  # the handler was imported, not something else
    heavy = sorted(top_level(modules) & set(HEAVY))
    if function_id not in NUMPY_AT_COLD_START:
        heavy += ["numpy"] if "numpy" in top_level(modules) else []
    assert heavy == [], f"{function_id} imports {heavy} at cold start: import them where they are used"
    foreign = sorted(modules & set(FOREIGN_FEATURES.get(function_id, ())))
    assert foreign == [], f"{function_id} loads {foreign} at cold start"


def test_the_consoles_deferred_pages_are_served_and_only_under_their_prefixes() -> None:
    """A route added to a deferred page module outside its prefixes would never be reached (404)."""
    from fastapi.testclient import TestClient

    from okyaku.console.app import DeferredPages, create_console_app
    from okyaku.console.services import console_services
    from okyaku.console.sessions import SessionSigner
    from okyaku.runtime import Runtime

    services = console_services(Runtime(), signer=SessionSigner("test-secret", ttl_s=60))
    app = create_console_app(services)
    deferred = [r for r in app.router.routes if isinstance(r, DeferredPages)]
    assert {d.factory.split(":")[0] for d in deferred} == {"okyaku.console.pages_chat", "okyaku.console.pages_agents"}
    for pages in deferred:
        module, function = pages.factory.split(":")
        router: APIRouter = getattr(importlib.import_module(module), function)()
        paths = [getattr(route, "path", "") for route in router.routes]
        assert paths, pages.factory
        outside = [p for p in paths if not p.startswith(pages.prefixes)]
        assert outside == [], f"{pages.factory} serves {outside} outside {pages.prefixes}: add the prefix in app.py"
    # Served through the deferred route, with the pages' own dependencies (sign-in) and the app's
    # error pages around them; nothing here reaches the database.
    with TestClient(app) as client:
        for path in ("/console/approvals", "/console/runs", "/console/chat/stream?q=hi"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 303, (path, response.status_code)
            assert response.headers["location"].startswith("/console/login?next=/console/"), path
        asked = client.post("/console/chat", data={"q": "hi"}, follow_redirects=False)
        assert (asked.status_code, asked.headers["location"]) == (303, "/console/login?next=/console/chat")
        missing = client.get("/console/approvalsx", headers={"accept": "text/html"})
        assert missing.status_code == 404 and "no such page" in missing.text.lower()
        wrong_method = client.put("/console/approvals")
        assert wrong_method.status_code == 405
