"""The web console over HTTP (no browser): sign-in and its cookie, CSRF, organization isolation,
and the Lambda path (API Gateway v2 event -> Mangum -> HTML and static assets).

The user flows in a real browser are in tests/browser/test_console_browser.py."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from typing import Any

from fastapi.testclient import TestClient

from okyaku.console.app import create_console_app
from okyaku.console.services import ConsoleServices
from okyaku.console.sessions import COOKIE_NAME, SessionSigner
from okyaku.entry import function_handler
from tests.integration.test_agents_runs import make_crm
from tests.support.openai_server import Reply


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def sign_in(client: TestClient, api_key: str) -> str:
    page = client.get("/console/login")
    assert page.status_code == 200
    response = client.post(
        "/console/login", data={"api_key": api_key, "csrf_token": csrf_of(page.text), "next": "/console"}
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/console").text)


def propose_deal_update(services: ConsoleServices, openai_server, tenant, crm: dict[str, Any]) -> Any:
    """A real deal_assistant run (scripted model) that proposes one stage change."""
    from okyaku.agents.schemas import RunRequest
    from okyaku.tenancy import Principal

    deal_id = crm["deal"]["id"]
    arguments = {"deal_id": deal_id, "stage": "Negotiation", "reasoning": "The buyer asked for contract terms."}
    openai_server.script(Reply.tool_call("update_deal", arguments), Reply.text("Proposed a stage change."))
    principal = Principal(tenant.id, tenant.org.user_id, uuid.uuid4())
    execution = services.agents.start_run(principal, "deal_assistant", RunRequest(context={"deal_id": deal_id}))
    assert services.agents.dispatcher.wait(timeout_s=30)
    view = services.agents.execution(tenant.id, execution.id)
    [action] = view.pending_actions
    return view.execution, action


def test_sign_in_gives_a_signed_httponly_samesite_cookie(console, tenant, pipeline) -> None:
    make_crm(tenant, pipeline)
    first = console.get("/console")
    assert first.status_code == 303 and first.headers["location"] == "/console/login?next=/console"
    login = console.get("/console/login")
    token = csrf_of(login.text)

    wrong = console.post("/console/login", data={"api_key": "oky_nope", "csrf_token": token})
    assert wrong.status_code == 401 and "not valid" in wrong.text

    response = console.post(
        "/console/login", data={"api_key": tenant.org.api_key, "csrf_token": token, "next": "https://evil.example/"}
    )
    assert response.status_code == 303 and response.headers["location"] == "/console"  # never off-site
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(COOKIE_NAME + "=")
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; behind https it is Secure (next test)
    assert tenant.org.api_key not in cookie

    dashboard = console.get("/console")
    assert dashboard.status_code == 200
    assert "Qualification" in dashboard.text and "Win rate" in dashboard.text
    assert "admin@acme.example" in dashboard.text


def test_the_cookie_is_secure_behind_https(services, tenant) -> None:
    app = create_console_app(services)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        page = client.get("/console/login", headers={"x-forwarded-proto": "https"})
        assert "Secure" in page.headers["set-cookie"]


def test_forms_without_the_sessions_csrf_token_are_refused(console, services, openai_server, tenant, pipeline) -> None:
    crm = make_crm(tenant, pipeline)
    _, action = propose_deal_update(services, openai_server, tenant, crm)
    token = sign_in(console, tenant.org.api_key)

    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": token[:-2] + "xx"}):
        refused = console.post(f"/console/approvals/{action.id}/approve", data=data)
        assert refused.status_code == 403, refused.text
        assert "did not come from your console session" in refused.text
    assert services.agents.approvals.get(tenant.id, action.id).status == "pending"

    # Another visitor's token (a valid token of another session) is refused too.
    with TestClient(console.app, follow_redirects=False) as other:
        other_token = csrf_of(other.get("/console/login").text)
    assert console.post(f"/console/approvals/{action.id}/approve", data={"csrf_token": other_token}).status_code == 403
    assert console.post("/console/logout", data={}).status_code == 403
    assert console.get("/console").status_code == 200  # still signed in

    accepted = console.post(f"/console/approvals/{action.id}/approve", headers={"X-CSRF-Token": token})
    assert accepted.status_code == 303  # the htmx header form of the token
    assert services.agents.approvals.get(tenant.id, action.id).status == "approved"


def test_another_organizations_ids_are_404_pages(
    console, services, openai_server, make_tenant, tenant, pipeline
) -> None:
    crm = make_crm(tenant, pipeline)
    run, action = propose_deal_update(services, openai_server, tenant, crm)
    other = make_tenant("Other")
    sign_in(console, other.org.api_key)
    urls = [
        f"/console/contacts/{crm['contact']['id']}",
        f"/console/companies/{crm['company']['id']}",
        f"/console/deals/{crm['deal']['id']}",
        f"/console/runs/{run.id}",
    ]
    for url in urls:
        response = console.get(url)
        assert response.status_code == 404, url
        assert "no such record in your organization" in response.text
        assert "Aurora" not in response.text and "Vera" not in response.text
    token = csrf_of(console.get("/console").text)
    assert console.post(f"/console/approvals/{action.id}/approve", data={"csrf_token": token}).status_code == 404
    assert (
        console.post(f"/console/approvals/{action.id}/reject", data={"csrf_token": token, "reason": "x"}).status_code
        == 404
    )
    assert services.agents.approvals.get(tenant.id, action.id).status == "pending"
    assert "Aurora" not in console.get("/console/deals").text
    assert "Aurora" not in console.get("/console/approvals").text
    assert console.get("/console/contacts/not-a-uuid").status_code == 404


def test_revoking_the_api_key_ends_its_console_sessions(console, tenant, owner_db) -> None:
    from sqlalchemy import text

    sign_in(console, tenant.org.api_key)
    assert console.get("/console").status_code == 200
    with owner_db.session() as session:
        session.execute(text("UPDATE api_keys SET revoked_at = now() WHERE organization_id = :o"), {"o": tenant.id})
    response = console.get("/console/deals")
    assert response.status_code == 303 and response.headers["location"].startswith("/console/login")


def test_a_tampered_or_expired_cookie_is_not_a_session(services, tenant) -> None:
    from okyaku.tenancy import authenticate

    signer = services.signer
    key_id = authenticate(services.runtime.db, f"Bearer {tenant.org.api_key}").api_key_id
    session = signer.signed_in(
        organization_id=tenant.id, user_id=None, api_key_id=key_id, user_label="x", organization_name="y"
    )
    cookie = signer.dumps(session)
    body, mac = cookie.split(".")
    forged_body = (
        base64.urlsafe_b64encode(
            base64.urlsafe_b64decode(body + "==").replace(str(tenant.id).encode(), str(uuid.uuid4()).encode())
        )
        .decode()
        .rstrip("=")
    )
    expired = SessionSigner("test-secret", ttl_s=3600, clock=lambda: session.issued_at + 7200)
    with TestClient(create_console_app(services), follow_redirects=False) as client:
        client.cookies.set(COOKIE_NAME, cookie, path="/console")
        assert client.get("/console").status_code == 200
        client.cookies.set(COOKIE_NAME, forged_body + "." + mac, path="/console")
        assert client.get("/console").status_code == 303
    assert expired.loads(cookie) is None
    assert SessionSigner("another-secret", ttl_s=3600).loads(cookie) is None


def lambda_event(
    path: str,
    *,
    cookies: list[str] | None = None,
    method: str = "GET",
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    from urllib.parse import urlencode, urlsplit

    split = urlsplit(path)
    path = split.path
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "ANY /console/{proxy+}",
        "rawPath": path,
        "rawQueryString": split.query,
        "headers": {"host": "abc.execute-api.us-east-1.amazonaws.com", "x-forwarded-proto": "https", **(headers or {})},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1", "userAgent": "t"},
            "requestId": "req-1",
            "routeKey": "GET /console/{proxy+}",
            "stage": "$default",
            "domainName": "abc.execute-api.us-east-1.amazonaws.com",
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if form is not None:
        event["body"] = urlencode(form)
        event["headers"]["content-type"] = "application/x-www-form-urlencoded"
    return event


def body_of(response: dict[str, Any]) -> bytes:
    body = response.get("body") or ""
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def test_pages_and_assets_pass_through_api_gateway_and_mangum(services) -> None:
    from importlib.resources import files

    handler = function_handler(name="console", http=create_console_app(services))
    static = files("okyaku.console").joinpath("static")

    script = handler(lambda_event("/console/static/htmx.min.js"), None)
    assert script["statusCode"] == 200
    assert script["headers"]["content-type"].startswith("text/javascript")
    assert (
        hashlib.sha256(body_of(script)).digest() == hashlib.sha256(static.joinpath("htmx.min.js").read_bytes()).digest()
    )

    icon = handler(lambda_event("/console/static/favicon.svg"), None)
    assert icon["statusCode"] == 200 and icon["headers"]["content-type"] == "image/svg+xml"
    assert body_of(icon) == static.joinpath("favicon.svg").read_bytes()

    login = handler(lambda_event("/console/login"), None)
    assert login["statusCode"] == 200 and login["headers"]["content-type"].startswith("text/html")
    assert "<form" in body_of(login).decode()
    # Payload 2.0 returns cookies in "cookies"; behind API Gateway (https) the cookie is Secure.
    [cookie] = login["cookies"]
    assert cookie.startswith(COOKIE_NAME) and "Secure" in cookie and "HttpOnly" in cookie

    root = handler(lambda_event("/"), None)
    assert root["statusCode"] == 303 and root["headers"]["location"] == "/console/today"  # the landing page
    assert handler(lambda_event("/console/static/nope.js"), None)["statusCode"] == 404


def test_sign_in_and_a_chat_stream_through_api_gateway_and_mangum(services, tenant, pipeline) -> None:
    """The whole answer comes back in one buffered Lambda response: every event, the final one last."""
    make_crm(tenant, pipeline)
    handler = function_handler(name="console", http=create_console_app(services))
    login = handler(lambda_event("/console/login"), None)
    cookie = login["cookies"][0].split(";")[0]
    form = {"api_key": tenant.org.api_key, "csrf_token": csrf_of(body_of(login).decode()), "next": "/console"}
    signed = handler(lambda_event("/console/login", method="POST", cookies=[cookie], form=form), None)
    assert signed["statusCode"] == 303, body_of(signed)
    cookie = signed["cookies"][0].split(";")[0]
    page = handler(lambda_event("/console", cookies=[cookie]), None)
    assert page["statusCode"] == 200 and "Ask about your CRM" in body_of(page).decode()

    question = {"csrf_token": csrf_of(body_of(page).decode()), "message": "how many deals by stage?"}
    turn = handler(
        lambda_event("/console/chat", method="POST", cookies=[cookie], form=question, headers={"hx-request": "true"}),
        None,
    )
    assert turn["statusCode"] == 200, body_of(turn)
    stream_url = re.search(r'sse-connect="([^"]+)"', body_of(turn).decode()).group(1).replace("&amp;", "&")
    stream = handler(lambda_event(stream_url, cookies=[cookie]), None)
    assert stream["statusCode"] == 200 and stream["headers"]["content-type"].startswith("text/event-stream")
    events = re.findall(r"^event: (\w+)$", body_of(stream).decode(), flags=re.MULTILINE)
    assert events[-2:] == ["final", "done"] and events.count("final") == 1
    assert 'class="answer"' in body_of(stream).decode()
    # The ticket is bound to this session: another visitor cannot open the stream.
    stranger = handler(lambda_event(stream_url), None)
    assert stranger["statusCode"] == 303


def test_the_dashboard_shows_the_open_anomalies_of_its_organization(console, runtime, tenant, make_tenant, pipeline):
    from html import escape

    from okyaku.anomalies.service import AnomalyService

    make_crm(tenant, pipeline)  # its deal has no close date: a data gap
    anomalies = AnomalyService(runtime)
    anomalies.scan(tenant.id, deliver=False)
    found, total = anomalies.list_anomalies(tenant.id, status="open")
    assert total >= 1
    sign_in(console, tenant.org.api_key)
    html = console.get("/console").text
    assert 'aria-label="Anomalies"' in html
    for anomaly in found[:8]:
        assert escape(anomaly.title) in html

    other = make_tenant("Quiet")
    with TestClient(console.app, follow_redirects=False) as client:
        sign_in(client, other.org.api_key)
        quiet = client.get("/console").text
    assert "No open anomalies." in quiet
    assert all(escape(a.title) not in quiet for a in found)
