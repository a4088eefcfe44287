"""The day's work over HTTP (no browser): the Tasks page (mine / everyone's, open / done, overdue
marked, complete in one click, version-checked) and Today, the landing page after sign-in."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from okyaku.tenancy import create_user
from tests.integration.test_agents_runs import make_crm
from tests.integration.test_console import csrf_of, sign_in


def task_items(html: str) -> dict[str, str]:
    """title -> the <li> of each task on the page."""
    return {
        re.search(r"<strong>([^<]+)</strong>", li).group(1): li
        for li in re.findall(r'<li class="task[^"]*".*?</li>', html, re.S)
    }


def test_tasks_mine_and_everyones_overdue_marked_and_completed_in_one_click(
    console, tenant, pipeline, db, publisher
) -> None:
    crm = make_crm(tenant, pipeline)
    rep = create_user(db, tenant.id, "rep@acme.example", "Rita Rep")
    now = datetime.now(UTC)
    me = str(tenant.org.user_id)
    for title, due, assignee in (
        ("Send the quote", now - timedelta(days=2), me),
        ("Call Vera", now + timedelta(minutes=1), me),
        ("Plan Q3", None, me),
        ("Rita follow-up", now + timedelta(days=3), str(rep.id)),
    ):
        body = {"title": title, "assignee_id": assignee, "deal_id": crm["deal"]["id"]}
        if due:
            body["due_date"] = due.isoformat()
        tenant.client.post("/api/v1/tasks", json=body)
    token = sign_in(console, tenant.org.api_key)

    mine = task_items(console.get("/console/tasks").text)
    assert list(mine) == ["Send the quote", "Call Vera", "Plan Q3"]  # by due date, undated last
    assert "overdue" in mine["Send the quote"] and "overdue" not in mine["Call Vera"]
    assert "Aurora telescopes" in mine["Call Vera"]  # the record it is about
    everyone = task_items(console.get("/console/tasks?who=everyone").text)
    assert "Rita follow-up" in everyone and "Rita Rep" in everyone["Rita follow-up"]

    [task] = [t for t in tenant.client.get("/api/v1/tasks").json()["data"] if t["title"] == "Send the quote"]
    form = {"csrf_token": token, "version": str(task["version"]), "next": "/console/tasks"}
    done = console.post(f"/console/tasks/{task['id']}/complete", data=form)
    assert done.status_code == 303 and done.headers["location"] == "/console/tasks?notice=done"
    stored = tenant.client.get(f"/api/v1/tasks/{task['id']}").json()
    assert stored["status"] == "done" and stored["completed_at"] and stored["version"] == task["version"] + 1
    event = [e for e in publisher.events if str(e.entity_id) == task["id"]][-1]
    assert event.operation == "updated" and "status" in event.changed_fields
    assert "Send the quote" not in task_items(console.get("/console/tasks").text)
    assert "Send the quote" in task_items(console.get("/console/tasks?state=done").text)
    again = console.post(f"/console/tasks/{task['id']}/complete", data=form)  # stale version
    assert again.status_code == 409


def test_today_shows_my_tasks_deals_closing_this_month_and_deals_gone_quiet(console, tenant, pipeline, db) -> None:
    crm = make_crm(tenant, pipeline)
    rep = create_user(db, tenant.id, "rep@acme.example", "Rita Rep")
    stages = crm["stages"]
    now = datetime.now(UTC)
    client = tenant.client
    client.post("/api/v1/tasks", json={"title": "Overdue quote", "due_date": (now - timedelta(days=1)).isoformat()})
    client.post("/api/v1/tasks", json={"title": "Due today call", "due_date": now.isoformat()})
    client.post("/api/v1/tasks", json={"title": "Next week", "due_date": (now + timedelta(days=7)).isoformat()})
    client.post(
        "/api/v1/tasks",
        json={"title": "Not mine", "due_date": now.isoformat(), "assignee_id": str(rep.id)},
    )
    # Tasks made by the API have no assignee unless given: assign mine.
    for t in client.get("/api/v1/tasks").json()["data"]:
        if t["assignee_id"] is None:
            client.patch(f"/api/v1/tasks/{t['id']}", json={"assignee_id": str(tenant.org.user_id)})
    client.patch(f"/api/v1/deals/{crm['deal']['id']}", json={"expected_close_date": date.today().isoformat()})
    quiet = client.post("/api/v1/deals", json={"name": "Silent pilot", "stage_id": stages["Proposal"]}).json()
    old_call = (now - timedelta(days=30)).isoformat()
    client.post("/api/v1/activities", json={"type": "call", "occurred_at": old_call, "deal_id": quiet["id"]})
    client.post(
        "/api/v1/deals",
        json={"name": "Rita's deal", "owner_id": str(rep.id), "expected_close_date": date.today().isoformat()},
    )

    login = console.get("/console/login")
    landed = console.post("/console/login", data={"api_key": tenant.org.api_key, "csrf_token": csrf_of(login.text)})
    assert landed.status_code == 303 and landed.headers["location"] == "/console/today"  # the landing page
    page = console.get("/console/today").text
    sections = dict(re.findall(r'<h2 id="([a-z]+)-title">.*?</h2>(.*?)</section>', page, re.S))
    overdue, due_today = sections["tasks"].split("<h3>Due today (")
    assert "Overdue quote" in overdue and "Due today call" not in overdue
    assert "Due today call" in due_today and "Overdue quote" not in due_today
    assert "Next week" not in page and "Not mine" not in page
    assert "Aurora telescopes" in sections["closing"] and "Rita&#39;s deal" not in page
    assert "Silent pilot" in sections["quiet"] and "Aurora telescopes" not in sections["quiet"]
    assert "No new notifications." in sections["notifications"]
    assert "priorities" in sections
