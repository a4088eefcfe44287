"""Record lists with their sort and filters in the URL (over HTTP, no browser): through the CRM
service's own sorts, filters and cursors; the next page keeps them."""

from __future__ import annotations

import re

from tests.integration import test_console_writes
from tests.integration.test_agents_runs import make_crm
from tests.integration.test_console import sign_in

services = test_console_writes.services
console = test_console_writes.console


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
