"""``okyaku ai ask`` prints the answer and its table; ``okyaku org create``, ``okyaku import`` and
``okyaku ai ask`` work against the embedded database of ``okyaku dev`` when DATABASE_URL is unset."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from okyaku.cli import main
from okyaku.config import get_settings
from tests.integration.chat_support import FixedClock, build_crm

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli_env(monkeypatch, dead_llm_url):
    monkeypatch.setenv("OLLAMA_BASE_URL", dead_llm_url)
    monkeypatch.setenv("LLM_MAX_RETRIES", "0")
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_ai_ask_prints_the_answer_and_the_table(cli_env, pg, tenant, pipeline, runtime, capsys):
    build_crm(tenant, pipeline, runtime, FixedClock().now)
    cli_env.setenv("DATABASE_URL", pg.app_url)
    get_settings.cache_clear()
    assert main(["ai", "ask", "how many contacts by company", "--org-key", tenant.org.api_key]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Contacts by company:\n- Acme Corp: count 2")
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("company_name"))
    assert lines[header].split() == ["company_name", "count"]
    assert lines[header + 2].split() == ["Acme", "Corp", "2"]
    assert "(answered by the built-in parser)" in out


def test_the_commands_default_to_the_embedded_database(cli_env, capsys, tmp_path):
    data_dir = ROOT / ".okyaku" / f"test-cli-{uuid.uuid4().hex[:8]}"
    cli_env.delenv("DATABASE_URL", raising=False)
    cli_env.delenv("DATABASE_MIGRATION_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert main(["org", "create", "Cli Org", "--admin-email", "cli@example.com", "--data-dir", str(data_dir)]) == 0
        key = capsys.readouterr().out.split("API key (shown once): ")[1].strip()
        csv = tmp_path / "contacts.csv"
        csv.write_text("first_name,last_name,email\nAda,Lovelace,ada@example.com\nAlan,Turing,alan@example.com\n")
        assert main(["import", str(csv), "--type", "contact", "--org-key", key, "--data-dir", str(data_dir)]) == 0
        capsys.readouterr()
        assert main(["ai", "ask", "how many contacts do we have", "--org-key", key, "--data-dir", str(data_dir)]) == 0
        assert capsys.readouterr().out.startswith("You have 2 contacts.")
    finally:
        import pgserver

        if (data_dir / "pg").exists():
            server = pgserver.get_server(str(data_dir / "pg"))
            server.cleanup_mode = "delete"
            server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)
