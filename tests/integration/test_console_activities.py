"""Logging an activity from a record page (over HTTP, no browser): the same row and change event
as the API's (the event is what drives embeddings and conversation analysis), links pre-filled
from the page, and the record's timeline newest first, paged."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tests.integration.test_agents_runs import make_crm
from tests.integration.test_console import sign_in


def test_log_a_call_from_a_deal_page_as_the_api_would(console, tenant, pipeline, publisher) -> None:
    crm = make_crm(tenant, pipeline)
    deal = crm["deal"]
    token = sign_in(console, tenant.org.api_key)
    page = console.get(f"/console/deals/{deal['id']}")
    form = dict(
        re.findall(r'<input type="hidden" name="(\w+_id|next)" value="([^"]*)"', page.text.split("Log activity")[1])
    )
    assert form == {
        "next": f"/console/deals/{deal['id']}",
        "deal_id": deal["id"],
        "company_id": crm["company"]["id"],
        "contact_id": crm["contact"]["id"],
    }
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")  # after the seeded call
    call = {"type": "call", "occurred_at": later, "subject": "Pricing call", "body": "Asked for 10% off."}
    logged = console.post("/console/activities/new", data={**form, **call, "csrf_token": token})
    assert logged.status_code == 303 and logged.headers["location"] == f"/console/deals/{deal['id']}?notice=logged"
    same = tenant.client.post(
        "/api/v1/activities",
        json={**call, "occurred_at": later + ":00", **{k: v for k, v in form.items() if k != "next"}},
    ).json()
    rows = tenant.client.get(f"/api/v1/activities?deal_id={deal['id']}&type=call").json()["data"]
    ours, theirs = [r for r in rows if r["subject"] == "Pricing call"]
    drop = {"id", "created_at", "updated_at"}
    assert {k: v for k, v in ours.items() if k not in drop} == {k: v for k, v in theirs.items() if k not in drop}
    assert theirs["id"] == same["id"] or ours["id"] == same["id"]
    events = [
        (e.entity_type, e.operation, sorted(e.changed_fields))
        for e in publisher.events
        if str(e.entity_id) in (ours["id"], theirs["id"])
    ]
    assert len(events) == 2 and events[0] == events[1] and events[0][:2] == ("activity", "created")

    after = console.get(f"/console/deals/{deal['id']}?notice=logged")
    assert "Activity logged." in after.text
    timeline = after.text.split('<ol class="timeline">')[1].split("</ol>")[0]
    assert timeline.index("Pricing call") < timeline.index("Discovery call")  # newest first


def test_the_timeline_is_paged_newest_first(console, tenant, pipeline) -> None:
    crm = make_crm(tenant, pipeline)
    contact_id = crm["contact"]["id"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(25):
        occurred = (start + timedelta(days=n)).isoformat()
        tenant.client.post(
            "/api/v1/activities",
            json={"type": "note", "subject": f"Note {n:02d}", "occurred_at": occurred, "contact_id": contact_id},
        )
    sign_in(console, tenant.org.api_key)
    first = console.get(f"/console/contacts/{contact_id}")
    subjects = re.findall(r"<strong>(Note \d\d)</strong>", first.text)
    assert subjects == [f"Note {n:02d}" for n in range(24, 4, -1)]
    older = re.search(r'<a rel="next" href="([^"]+)"', first.text)
    assert older and "activities_cursor=" in older.group(1)
    second = console.get(older.group(1).replace("&amp;", "&").split("#")[0])
    assert re.findall(r"<strong>(Note \d\d)</strong>", second.text) == [f"Note {n:02d}" for n in range(4, -1, -1)]
    assert 'rel="next"' not in second.text.split('<ol class="timeline">')[1]
