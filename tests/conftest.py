"""Fixtures shared by every test tier: a real Postgres + pgvector, organizations, API clients."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from okyaku.config import Settings
from okyaku.db import Database
from okyaku.events.model import ChangeEvent
from okyaku.local.postgres import LocalDatabase, prepare_database, start_embedded_postgres
from okyaku.runtime import Runtime
from okyaku.tenancy import NewOrganization, create_organization

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["tests.support.fixtures"]  # the scripted OpenAI-compatible server


@pytest.fixture(scope="session")
def pg() -> Iterator[LocalDatabase]:
    """One embedded Postgres per test session, migrated, with the app role able to log in."""
    datadir = ROOT / ".okyaku" / f"test-pg-{uuid.uuid4().hex[:8]}"
    owner_url = start_embedded_postgres(datadir)
    try:
        yield prepare_database(owner_url)
    finally:
        import pgserver

        server = pgserver.get_server(str(datadir))  # the cached handle: set its mode, then clean up
        server.cleanup_mode = "delete"
        server.cleanup()
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture(scope="session")
def db(pg: LocalDatabase) -> Iterator[Database]:
    database = Database(pg.app_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def owner_db(pg: LocalDatabase) -> Iterator[Database]:
    """The table owner (a superuser here): for tests about SQL itself."""
    database = Database(pg.owner_url)
    yield database
    database.dispose()


class RecordingPublisher:
    """A fake publisher: keeps what it was given, or fails on demand."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []
        self.fail_with: Exception | None = None

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.events.extend(events)


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@dataclass
class Tenant:
    org: NewOrganization
    client: TestClient

    @property
    def id(self) -> uuid.UUID:
        return self.org.organization_id


@pytest.fixture
def settings(pg: LocalDatabase) -> Settings:
    return Settings(database_url=pg.app_url, database_migration_url=pg.owner_url)


@pytest.fixture
def runtime(settings: Settings, db: Database, publisher: RecordingPublisher) -> Runtime:
    return Runtime(settings, db=db, publisher=publisher)


@pytest.fixture
def make_tenant(db: Database, runtime: Runtime) -> Iterator[object]:
    from okyaku.crm.api import create_crm_app

    app = create_crm_app(runtime)
    clients: list[TestClient] = []

    def make(name: str = "Acme") -> Tenant:
        org = create_organization(db, f"{name} {uuid.uuid4().hex[:6]}", f"admin@{name.lower()}.example")
        client = TestClient(app, headers={"Authorization": f"Bearer {org.api_key}"})
        clients.append(client)
        return Tenant(org=org, client=client)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def tenant(make_tenant) -> Tenant:  # type: ignore[no-untyped-def]
    return make_tenant("Acme")  # type: ignore[no-any-return]


STAGES = [
    {"name": "Qualification", "probability": 0.1},
    {"name": "Proposal", "probability": 0.4},
    {"name": "Negotiation", "probability": 0.7},
    {"name": "Closed Won", "probability": 1.0, "is_won": True},
    {"name": "Closed Lost", "probability": 0.0, "is_lost": True},
]


@pytest.fixture
def pipeline(tenant: Tenant) -> dict[str, object]:
    response = tenant.client.post("/api/v1/pipelines", json={"name": "Sales", "stages": STAGES})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on loopback: a real HTTP endpoint for SQS, EventBridge, S3, CloudFormation."""
    import os

    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def sqs(moto_endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
