"""Migration 0023: the reason a deal was won moves from ``custom_properties.won_reason`` (where the
console kept it before there was a column) into ``deals.won_reason``, in every organization, and
the custom property's definition goes; the deal's other custom properties stay."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from okyaku.db import normalize_url
from okyaku.db.migrate import upgrade
from okyaku.local.postgres import LocalDatabase


def test_won_reasons_kept_as_a_custom_property_move_into_the_column(pg: LocalDatabase) -> None:
    name = f"won_reason_{uuid.uuid4().hex[:8]}"
    server = create_engine(normalize_url(pg.owner_url), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg.owner_url).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(normalize_url(url))
    try:
        upgrade(url, "0001")
        orgs = [uuid.uuid4(), uuid.uuid4()]
        deals = {}
        with engine.begin() as connection:
            for i, org in enumerate(orgs):
                pipeline, stage = uuid.uuid4(), uuid.uuid4()
                organization = {"o": org, "n": f"o{i}"}
                connection.execute(text("INSERT INTO organizations (id, name) VALUES (:o, :n)"), organization)
                connection.execute(
                    text("INSERT INTO pipelines (id, organization_id, name) VALUES (:p, :o, 'Sales')"),
                    {"p": pipeline, "o": org},
                )
                connection.execute(
                    text(
                        "INSERT INTO pipeline_stages (id, organization_id, pipeline_id, name, position, is_won) "
                        "VALUES (:s, :o, :p, 'Won', 0, true)"
                    ),
                    {"s": stage, "o": org, "p": pipeline},
                )
                for label, properties in (
                    ("with", f'{{"won_reason": " Reason {i} ", "color": "red"}}'),
                    ("without", '{"color": "blue"}'),
                ):
                    deal_id = deals[(i, label)] = uuid.uuid4()
                    connection.execute(
                        text(
                            "INSERT INTO deals (id, organization_id, name, pipeline_id, stage_id, custom_properties) "
                            "VALUES (:d, :o, :n, :p, :s, CAST(:c AS jsonb))"
                        ),
                        {"d": deal_id, "o": org, "n": label, "p": pipeline, "s": stage, "c": properties},
                    )
                connection.execute(
                    text(
                        "INSERT INTO custom_property_definitions (id, organization_id, entity_type, name, data_type) "
                        "VALUES (:i, :o, 'deal', 'won_reason', 'string'), (:j, :o, 'deal', 'color', 'category')"
                    ),
                    {"i": uuid.uuid4(), "j": uuid.uuid4(), "o": org},
                )

        upgrade(url, "heads")

        with engine.connect() as connection:
            rows = {
                r.id: (r.won_reason, r.custom_properties)
                for r in connection.execute(text("SELECT id, won_reason, custom_properties FROM deals"))
            }
            definitions = sorted(connection.execute(text("SELECT name FROM custom_property_definitions")).scalars())
        for i in range(2):
            assert rows[deals[(i, "with")]] == (f"Reason {i}", {"color": "red"})
            assert rows[deals[(i, "without")]] == (None, {"color": "blue"})
        assert definitions == ["color", "color"]
    finally:
        engine.dispose()
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()
