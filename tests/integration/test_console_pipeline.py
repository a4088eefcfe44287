"""The pipeline board over HTTP (no browser): columns with counts and amounts, the owner filter,
a stage move by the no-JS form (stage history, change event, version checked), Won / Lost with
a reason. The drag path is in tests/browser/test_console_writes_browser.py."""

from __future__ import annotations

import re

from okyaku.tenancy import create_user
from tests.integration.test_agents_runs import make_crm
from tests.integration.test_console import sign_in


def column(html: str, stage: str) -> str:
    match = re.search(rf'<section class="board-column"[^>]*>\s*<h2[^>]*>{stage}</h2>.*?</section>', html, re.S)
    assert match, f"no column {stage}"
    return match.group(0)


def test_the_board_shows_open_deals_by_stage_with_count_and_amount(console, tenant, pipeline, db) -> None:
    crm = make_crm(tenant, pipeline)
    stages = crm["stages"]
    rep = create_user(db, tenant.id, "rep@acme.example", "Rita Rep")
    lens = {"name": "Lens renewal", "amount": "2000", "stage_id": stages["Qualification"], "owner_id": str(rep.id)}
    tenant.client.post("/api/v1/deals", json=lens)
    tenant.client.post("/api/v1/deals", json={"name": "Mirrors", "amount": "9000", "stage_id": stages["Closed Won"]})
    sign_in(console, tenant.org.api_key)
    board = console.get("/console/pipeline")
    assert board.status_code == 200
    qualification = column(board.text, "Qualification")
    assert "2 deals · 50,000" in qualification
    assert "Aurora telescopes" in qualification and "Aurora Optics" in qualification and "Lens renewal" in qualification
    assert "Mirrors" not in board.text  # closed deals are not on the board
    proposal = column(board.text, "Proposal")
    assert "0 deals</p>" in proposal and "0.00" not in proposal  # an empty column has no amount to show
    assert 'aria-current="page">Pipeline<' in board.text

    mine = column(console.get("/console/pipeline?owner=me").text, "Qualification")  # the admin's
    assert "1 deal · 48,000" in mine and "Lens renewal" not in mine
    ritas = column(console.get(f"/console/pipeline?owner={rep.id}").text, "Qualification")
    assert "1 deal · 2,000" in ritas and "Lens renewal" in ritas and "Rita Rep" in ritas


def test_a_stage_move_is_version_checked_and_recorded(console, tenant, pipeline, publisher) -> None:
    crm = make_crm(tenant, pipeline)
    stages = crm["stages"]
    deal_id = crm["deal"]["id"]
    token = sign_in(console, tenant.org.api_key)
    form = {"csrf_token": token, "stage_id": stages["Proposal"], "version": "1", "next": "/console/pipeline"}
    moved = console.post(f"/console/deals/{deal_id}/stage", data=form)
    assert moved.status_code == 303 and moved.headers["location"] == "/console/pipeline?notice=moved"
    deal = tenant.client.get(f"/api/v1/deals/{deal_id}").json()
    assert deal["stage_id"] == stages["Proposal"] and deal["version"] == 2
    history = tenant.client.get(f"/api/v1/deals/{deal_id}/stage-history").json()
    assert [h["to_stage_id"] for h in history] == [stages["Qualification"], stages["Proposal"]]
    event = [e for e in publisher.events if str(e.entity_id) == deal_id][-1]
    assert event.operation == "updated" and "stage_id" in event.changed_fields and event.version == 2
    assert "1 deal · 48,000" in column(console.get("/console/pipeline").text, "Proposal")

    # The same form again (version 1, now stale) moves nothing and says where the deal is now.
    stale = console.post(f"/console/deals/{deal_id}/stage", data={**form, "stage_id": stages["Negotiation"]})
    assert stale.status_code == 409
    assert "Someone else changed this deal" in stale.text and "now in Proposal (version 2)" in stale.text
    assert tenant.client.get(f"/api/v1/deals/{deal_id}").json()["stage_id"] == stages["Proposal"]


def test_won_and_lost_with_a_reason(console, tenant, pipeline) -> None:
    crm = make_crm(tenant, pipeline)
    stages = crm["stages"]
    token = sign_in(console, tenant.org.api_key)
    won_id = crm["deal"]["id"]
    page = console.get(f"/console/deals/{won_id}")
    assert "Close as won or lost" in page.text and 'name="stage_id"' in page.text
    won = console.post(
        f"/console/deals/{won_id}/close",
        data={"csrf_token": token, "outcome": "won", "reason": "Best optics in the tender", "version": "1"},
    )
    assert won.status_code == 303 and won.headers["location"] == f"/console/deals/{won_id}?notice=closed"
    deal = tenant.client.get(f"/api/v1/deals/{won_id}").json()
    assert deal["stage_id"] == stages["Closed Won"] and deal["status"] == "won" and deal["closed_at"]
    # The reason is the deal's own field (migration 0023), not a custom property.
    assert deal["won_reason"] == "Best optics in the tender" and "won_reason" not in deal["custom_properties"]
    assert "<dt>Won reason</dt><dd>Best optics in the tender</dd>" in console.get(f"/console/deals/{won_id}").text

    lost_id = tenant.client.post("/api/v1/deals", json={"name": "Pilot", "amount": "5000"}).json()["id"]
    lost = console.post(
        f"/console/deals/{lost_id}/close",
        data={"csrf_token": token, "outcome": "lost", "reason": "Chose a cheaper vendor", "version": "1"},
    )
    assert lost.status_code == 303
    deal = tenant.client.get(f"/api/v1/deals/{lost_id}").json()
    assert (deal["status"], deal["lost_reason"], deal["won_reason"]) == ("lost", "Chose a cheaper vendor", None)
    assert "<dt>Lost reason</dt><dd>Chose a cheaper vendor</dd>" in console.get(f"/console/deals/{lost_id}").text

    # The API takes and returns it as any other field.
    patched = tenant.client.patch(f"/api/v1/deals/{won_id}", json={"won_reason": "  Fastest delivery  "})
    assert patched.status_code == 200 and patched.json()["won_reason"] == "Fastest delivery"
    too_long = tenant.client.patch(f"/api/v1/deals/{won_id}", json={"won_reason": "x" * 501})
    assert too_long.status_code == 422 and too_long.json()["error"]["details"][0]["field"] == "won_reason"
