"""The content endpoints end to end: HTTP in, real auth against Postgres, the LLM over real HTTP."""

import importlib.util
import json
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from okyaku.config import get_settings
from okyaku.content.api import create_content_app
from okyaku.content.limits import LIMITS, platform_length
from okyaku.content.schemas import Platform
from okyaku.llm import FeatureFlags
from okyaku.tenancy import create_organization
from tests.support.openai_server import Reply

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api_key(db):
    return create_organization(db, f"Content {uuid.uuid4().hex[:6]}", "admin@content.example").api_key


@pytest.fixture
def make_client(runtime, api_key, make_gateway):
    clients = []

    def make(base_url, **gateway_options):
        app = create_content_app(runtime, make_gateway(base_url, **gateway_options))
        client = TestClient(app, headers={"Authorization": f"Bearer {api_key}"})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client, openai_server):
    return make_client(openai_server.base_url)


def words(count, word="renewal"):
    return " ".join(f"{word}{i}" for i in range(count))


def draft(text, hashtags=(), subject=None):
    return Reply.json_object({"text": text, "hashtags": list(hashtags), "subject": subject})


# --- generate ---------------------------------------------------------------------------------


def test_generate_returns_a_publishable_post_with_hashtags(client, openai_server):
    openai_server.script(draft("Renewal season is here. Lock in your plan today.", ["#SaaS", "renewals", "saas"]))
    response = client.post(
        "/api/v1/ai/content/generate",
        json={"topic": "contract renewals", "platform": "x", "tone": "Friendly", "include_cta": True},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["platform"] == "twitter"
    assert body["hashtags"] == ["SaaS", "renewals"]
    assert body["content"] == "Renewal season is here. Lock in your plan today.\n\n#SaaS #renewals"
    assert body["character_count"] == len(body["content"]) and body["character_limit"] == 280
    assert (body["shortened"], body["truncated"], body["degraded"]) == (False, False, False)
    assert body["prompt_version"] == "content.generate@1" and body["model"] == "llama3.1"
    assert body["usage"]["total_tokens"] > 0
    prompt = openai_server.requests_to("chat")[0].messages
    assert "contract renewals" in prompt[-1]["content"] and "280 characters" in prompt[-1]["content"]
    assert "friendly tone" in prompt[0]["content"] and "call to action" in prompt[-1]["content"]


def test_generate_without_hashtags_drops_them(client, openai_server):
    openai_server.script(draft("A plain LinkedIn post about pipeline hygiene.", ["pipeline"]))
    body = client.post(
        "/api/v1/ai/content/generate",
        json={"topic": "pipeline hygiene", "platform": "linkedin", "include_hashtags": False},
    ).json()
    assert body["hashtags"] == [] and "#" not in body["content"]


def test_an_over_long_draft_is_shortened_by_the_llm(client, openai_server):
    openai_server.script(draft(words(80), ["SaaS", "B2B"]), Reply.json_object({"text": "Renewals, simplified."}))
    body = client.post("/api/v1/ai/content/generate", json={"topic": "renewals", "platform": "twitter"}).json()
    assert body["content"] == "Renewals, simplified.\n\n#SaaS #B2B"
    assert (body["shortened"], body["truncated"]) == (True, False)
    shorten_prompt = openai_server.requests_to("chat")[1].messages[-1]["content"]
    assert "at most 268 characters" in shorten_prompt  # 280 less "\n\n#SaaS #B2B"


@pytest.mark.parametrize("platform", [p for p in Platform])
def test_every_platform_limit_holds_even_when_the_llm_cannot_shorten(make_client, openai_server, platform):
    client = make_client(openai_server.base_url)
    limit = LIMITS[platform].max_chars
    long_text = words(limit // 8 + 50)
    assert platform_length(platform, long_text) > limit
    openai_server.script(
        draft(long_text, ["SaaS", "Renewals"], subject="A subject line " * 10),
        Reply.json_object({"text": long_text + " still too long"}),
    )
    response = client.post("/api/v1/ai/content/generate", json={"topic": "renewals", "platform": platform.value})
    assert response.status_code == 200, response.text
    body = response.json()
    assert platform_length(platform, body["content"]) == body["character_count"] <= limit
    assert body["truncated"] and body["shortened"]
    assert body["content"].split("\n\n")[0].rstrip("…") in long_text
    if platform is Platform.email:
        assert body["subject"] and len(body["subject"]) <= 78 and body["hashtags"] == []


def test_when_shortening_fails_the_draft_is_cut_rather_than_lost(client, openai_server):
    openai_server.script(draft(words(80)), Reply.text("not json"), Reply.text("still not json"))
    body = client.post("/api/v1/ai/content/generate", json={"topic": "renewals", "platform": "twitter"}).json()
    assert body["character_count"] <= 280 and body["truncated"] and not body["shortened"]


# --- variations, adapt, improve, hashtags ---------------------------------------------------


def test_variations_insists_on_the_requested_count(client, openai_server):
    one = {"variations": [{"text": "Only one"}]}
    two = {"variations": [{"text": "First take", "hashtags": ["a"]}, {"text": words(60)}]}
    openai_server.script(Reply.json_object(one), Reply.json_object(two), Reply.json_object({"text": "Second, short"}))
    response = client.post(
        "/api/v1/ai/content/variations",
        json={"content": "Our renewal offer ends Friday.", "platform": "twitter", "num_variations": 2},
    )
    assert response.status_code == 200, response.text
    variations = response.json()["variations"]
    assert [v["content"] for v in variations] == ["First take\n\n#a", "Second, short"]
    assert variations[1]["shortened"]


def test_adapt_to_the_same_platform_is_a_400(client, openai_server):
    response = client.post(
        "/api/v1/ai/content/adapt",
        json={"content": "Our renewal offer ends Friday.", "source_platform": "x", "target_platform": "Twitter"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "same_platform"
    assert openai_server.requests == []


def test_adapt_to_email_gives_a_subject(client, openai_server):
    openai_server.script(draft("Hi there,\n\nOur renewal offer ends Friday.", subject="Your renewal offer"))
    response = client.post(
        "/api/v1/ai/content/adapt",
        json={"content": "Renewal offer ends Friday! #SaaS", "source_platform": "x", "target_platform": "email"},
    )
    body = response.json()
    assert response.status_code == 200, response.text
    assert (body["source_platform"], body["target_platform"], body["subject"]) == (
        "twitter",
        "email",
        "Your renewal offer",
    )
    assert body["character_limit"] == 5000 and body["hashtags"] == []


def test_improve_lists_the_improvements(client, openai_server):
    openai_server.script(
        Reply.json_object(
            {"text": "Renew by Friday and keep your rate.", "hashtags": [], "improvements": ["Clearer hook", " "]}
        )
    )
    response = client.post(
        "/api/v1/ai/content/improve",
        json={"content": "we have renewals u should renew", "platform": "facebook", "improvement_focus": "clarity"},
    )
    body = response.json()
    assert body["content"] == "Renew by Friday and keep your rate." and body["improvements"] == ["Clearer hook"]
    assert "Focus on: clarity" in openai_server.requests_to("chat")[0].messages[-1]["content"]


def test_hashtags_are_a_clean_list_of_at_most_count(client, openai_server):
    openai_server.script(Reply.json_object({"hashtags": ["#SaaS", "saas", "B2B", "Customer Success", "CRM"]}))
    response = client.post(
        "/api/v1/ai/content/hashtags",
        json={"content": "Our renewal offer ends Friday.", "platform": "instagram", "count": 3},
    )
    assert response.status_code == 200
    assert response.json()["hashtags"] == ["SaaS", "B2B", "CustomerSuccess"]


def test_hashtags_for_email_are_a_400(client):
    response = client.post(
        "/api/v1/ai/content/hashtags", json={"content": "Our renewal offer ends Friday.", "platform": "email"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "unsupported_platform"


# --- validation and auth ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("generate", {"topic": "hi", "platform": "x"}, "topic"),
        ("generate", {"topic": "   renewals   " + "x" * 500, "platform": "x"}, "topic"),
        ("generate", {"topic": "renewals", "platform": "myspace"}, "platform"),
        ("generate", {"topic": "renewals", "platform": "x", "length": "epic"}, "length"),
        ("generate", {"topic": "renewals", "platform": "x", "brand_voice": "v" * 501}, "brand_voice"),
        ("variations", {"content": "Long enough text", "platform": "x", "num_variations": 6}, "num_variations"),
        ("adapt", {"content": "too short", "source_platform": "x", "target_platform": "email"}, "content"),
        (
            "improve",
            {"content": "Long enough text", "platform": "x", "improvement_focus": "f" * 201},
            "improvement_focus",
        ),
        ("hashtags", {"content": "Long enough text", "platform": "x", "count": 11}, "count"),
    ],
)
def test_invalid_requests_are_422_with_the_field(client, openai_server, path, payload, field):
    response = client.post(f"/api/v1/ai/content/{path}", json=payload)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field]
    assert openai_server.requests == []


def test_content_needs_an_api_key(runtime, openai_server, make_gateway):
    with TestClient(create_content_app(runtime, make_gateway(openai_server.base_url))) as anonymous:
        response = anonymous.post("/api/v1/ai/content/generate", json={"topic": "renewals", "platform": "x"})
    assert response.status_code == 401


# --- the LLM misbehaving or absent ------------------------------------------------------------


def test_an_answer_invalid_twice_is_a_503_in_the_error_shape(client, openai_server):
    openai_server.script(Reply.json_object({"hashtags": []}), Reply.text("sorry, I can't"))
    response = client.post("/api/v1/ai/content/generate", json={"topic": "renewals", "platform": "x"})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "llm_output_invalid" and "LLM" in error["message"]
    assert error["details"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("generate", {"topic": "renewals", "platform": "x"}),
        ("variations", {"content": "Our renewal offer ends Friday.", "platform": "x"}),
        ("adapt", {"content": "Our renewal offer ends Friday.", "source_platform": "x", "target_platform": "linkedin"}),
        ("improve", {"content": "Our renewal offer ends Friday.", "platform": "x"}),
        ("hashtags", {"content": "Our renewal offer ends Friday.", "platform": "x"}),
    ],
)
def test_llm_down_is_a_503_saying_so(make_client, dead_llm_url, path, payload):
    client = make_client(dead_llm_url)
    response = client.post(f"/api/v1/ai/content/{path}", json=payload)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "llm_unavailable" and error["message"].startswith("the LLM is unavailable")
    again = client.post(f"/api/v1/ai/content/{path}", json=payload)  # breaker open now
    assert again.status_code == 503 and again.json()["error"]["code"] == "llm_circuit_open"


def test_with_the_llm_down_status_and_health_still_answer(make_client, dead_llm_url):
    client = make_client(dead_llm_url)
    status = client.get("/api/v1/ai/content/status")
    assert status.status_code == 200
    body = status.json()
    assert (body["available"], body["degraded"], body["provider"], body["model"]) == (False, True, "ollama", "llama3.1")
    assert body["features"]["content"] == {"enabled": True, "available": False}
    assert body["features"]["predictions"] == {"enabled": True, "available": True}
    assert body["features"]["rag"]["available"]  # the local embedder stands in
    assert any("ollama pull llama3.1" in step for step in body["setup_instructions"])

    health = client.get("/api/v1/ai/health")
    assert health.status_code == 200
    report = health.json()
    assert report["degraded"] and not report["ollama"]["reachable"]
    assert report["database"] == {"reachable": True, "error": None}
    assert report["embedding"]["dimension"] == 384


def test_status_when_the_llm_is_there(client):
    body = client.get("/api/v1/ai/content/status").json()
    assert (body["available"], body["degraded"], body["setup_instructions"]) == (True, False, None)
    limits = {p["name"]: p["character_limit"] for p in body["platforms"]}
    assert limits == {"twitter": 280, "linkedin": 3000, "facebook": 63206, "instagram": 2200, "email": 5000}
    assert "professional" in body["tones"] and body["lengths"] == ["short", "medium", "long"]


def test_a_disabled_content_feature_is_a_503(make_client, openai_server):
    client = make_client(openai_server.base_url, features=FeatureFlags(content=False))
    response = client.post("/api/v1/ai/content/generate", json={"topic": "renewals", "platform": "x"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "feature_disabled"
    assert client.get("/api/v1/ai/content/status").json()["features"]["content"] == {
        "enabled": False,
        "available": False,
    }
    assert openai_server.requests_to("chat") == []


def test_openapi_documents_the_content_routes(client):
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    for name in ("generate", "variations", "adapt", "improve", "hashtags"):
        assert "503" in paths[f"/api/v1/ai/content/{name}"]["post"]["responses"]
    assert "/api/v1/ai/content/status" in paths and "/api/v1/ai/health" in paths


# --- the deployed handler ---------------------------------------------------------------------


def http_api_event(method, path, body=None, headers=None):
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "localhost", "content-type": "application/json", **(headers or {})},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"},
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0,
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


def test_the_lambda_handler_serves_health_and_content(pg, api_key, openai_server, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    monkeypatch.setenv("OLLAMA_BASE_URL", openai_server.base_url)
    get_settings.cache_clear()
    spec = importlib.util.spec_from_file_location("content_function", ROOT / "functions" / "content" / "app.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        health = module.handler(http_api_event("GET", "/api/v1/ai/health"), None)
        assert health["statusCode"] == 200
        assert json.loads(health["body"])["status"] == "ok"

        openai_server.script(Reply.json_object({"hashtags": ["SaaS"]}))
        event = http_api_event(
            "POST",
            "/api/v1/ai/content/hashtags",
            {"content": "Our renewal offer ends Friday.", "platform": "linkedin"},
            {"authorization": f"Bearer {api_key}"},
        )
        response = module.handler(event, None)
        assert response["statusCode"] == 200, response["body"]
        assert json.loads(response["body"])["hashtags"] == ["SaaS"]
    finally:
        if hasattr(module, "app"):
            module.app.state.llm.close()
            module.app.state.runtime.db.dispose()
        get_settings.cache_clear()
