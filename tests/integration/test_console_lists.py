"""Record lists with their sort and filters in the URL (over HTTP, no browser): through the CRM
service's own sorts, filters and cursors; the next page keeps them."""

from __future__ import annotations

import re

from tests.integration.test_agents_runs import make_crm
from tests.integration.test_console import sign_in


def names(html: str) -> list[str]:
    return re.findall(r'<th scope="row"><a href="[^"]+">([^<]+)</a></th>', html)


def test_sort_and_filter_in_the_url_and_kept_by_the_next_page(console, tenant, pipeline) -> None:
    crm = make_crm(tenant, pipeline)
    for n, name in enumerate(["Cobalt", "Amber", "Beryl"] * 10):
        tenant.client.post("/api/v1/companies", json={"name": f"{name} {n:02d}", "employee_count": n})
    tenant.client.post("/api/v1/contacts", json={"first_name": "Cass", "lifecycle_stage": "customer"})
    tenant.client.post("/api/v1/deals", json={"name": "Later deal", "stage_id": crm["stages"]["Proposal"]})
    sign_in(console, tenant.org.api_key)

    by_name = console.get("/console/companies?sort=name")
    first_page = names(by_name.text)
    assert first_page == sorted(first_page) and first_page[0] == "Amber 01" and len(first_page) == 25
    assert 'aria-sort="ascending"' in by_name.text
    assert 'href="/console/companies?sort=-name"' in by_name.text  # the header now sorts the other way
    following = re.search(r'<a rel="next" href="([^"]+)"', by_name.text).group(1).replace("&amp;", "&")
    assert "sort=name" in following
    rest = names(console.get(following).text)
    assert rest == sorted(rest) and rest[0] > first_page[-1] and len(first_page) + len(rest) == 31

    biggest = names(console.get("/console/companies?sort=-employee_count").text)
    assert biggest[0] == "Beryl 29"

    customers = names(console.get("/console/contacts?lifecycle_stage=customer").text)
    assert customers == ["Cass"]
    proposal = names(console.get(f"/console/deals?stage={crm['stages']['Proposal']}").text)
    assert proposal == ["Later deal"]
    mine = names(console.get("/console/deals?owner=me").text)
    assert sorted(mine) == ["Aurora telescopes", "Later deal"]  # API-made deals are the key's user's

    refused = console.get("/console/companies?sort=password")
    assert refused.status_code == 422  # not a sort the API offers


def test_bulk_assign_and_delete_one_change_event_per_record(console, tenant, pipeline, db, publisher) -> None:
    from okyaku.tenancy import create_user

    rep = create_user(db, tenant.id, "rep@acme.example", "Rita Rep")
    ids = [tenant.client.post("/api/v1/companies", json={"name": f"Bulk {n}"}).json()["id"] for n in range(4)]
    token = sign_in(console, tenant.org.api_key)
    assert 'aria-label="Select Bulk 0"' in console.get("/console/companies").text
    before = len(publisher.events)
    assigned = console.post(
        "/console/companies/bulk",
        data={
            "csrf_token": token,
            "ids": ids[:3],
            "owner": str(rep.id),
            "action": "assign",
            "next": "/console/companies",
        },
    )
    assert assigned.status_code == 303
    assert assigned.headers["location"] == "/console/companies?notice=assigned_n&n=3&refused=0"
    assert "Owner assigned to 3 records; 0 refused." in console.get(assigned.headers["location"]).text
    owners = {c["id"]: c["owner_id"] for c in tenant.client.get("/api/v1/companies").json()["data"]}
    assert [owners[i] for i in ids] == [str(rep.id)] * 3 + [None]
    events = publisher.events[before:]
    assert sorted(str(e.entity_id) for e in events) == sorted(ids[:3])
    assert all(e.operation == "updated" and e.changed_fields == ["owner_id"] for e in events)

    confirm = console.post("/console/companies/bulk", data={"csrf_token": token, "ids": ids[2:], "action": "delete"})
    assert confirm.status_code == 200 and "Bulk 2" in confirm.text and "Bulk 3" in confirm.text
    assert len(tenant.client.get("/api/v1/companies").json()["data"]) == 4  # nothing yet
    deleted = console.post(
        "/console/companies/bulk", data={"csrf_token": token, "ids": ids[2:], "action": "delete", "confirm": "yes"}
    )
    assert deleted.headers["location"] == "/console/companies?notice=deleted_n&n=2&refused=0"
    left = sorted(c["name"] for c in tenant.client.get("/api/v1/companies").json()["data"])
    assert left == ["Bulk 0", "Bulk 1"]
