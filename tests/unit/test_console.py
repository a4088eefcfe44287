"""The console's pure parts: session signing and CSRF tokens, SVG charts, edits of proposals,
safe redirects, and the vendored front-end files matching what VENDORED.md says they are."""

from __future__ import annotations

import hashlib
import re
import uuid
from importlib.resources import files

import pytest

from okyaku.console import charts
from okyaku.console.pages_agents import field_text, parse_edit
from okyaku.console.sessions import SessionSigner
from okyaku.console.web import safe_next
from okyaku.errors import ValidationFailed

STATIC = files("okyaku.console").joinpath("static")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_round_trips_and_any_change_to_it_is_refused() -> None:
    clock = Clock()
    signer = SessionSigner("s3cret", ttl_s=600, clock=clock)
    org, user, key = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    session = signer.signed_in(
        organization_id=org, user_id=user, api_key_id=key, user_label="a@b.example", organization_name="Acme"
    )
    cookie = signer.dumps(session)
    assert signer.loads(cookie) == session
    body, mac = cookie.split(".")
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
    for forged in (flipped + "." + mac, body + "." + mac[:-1], body, "", "x.y", "." * 5000):
        assert signer.loads(forged) is None, forged
    assert SessionSigner("other", ttl_s=600, clock=clock).loads(cookie) is None
    clock.now += 601
    assert signer.loads(cookie) is None  # expired


def test_sign_in_starts_a_new_nonce_and_csrf_tokens_belong_to_one_session() -> None:
    signer = SessionSigner("s3cret", ttl_s=600)
    anonymous = signer.new_anonymous()
    signed = signer.signed_in(
        organization_id=uuid.uuid4(), user_id=None, api_key_id=uuid.uuid4(), user_label="", organization_name=""
    )
    assert anonymous.nonce != signed.nonce  # no session fixation
    token = signer.csrf_token(signed)
    assert signer.csrf_valid(signed, token)
    assert not signer.csrf_valid(anonymous, token)
    assert not signer.csrf_valid(signed, None) and not signer.csrf_valid(signed, "")
    assert not SessionSigner("other", ttl_s=600).csrf_valid(signed, token)
    with pytest.raises(ValueError):
        SessionSigner("", ttl_s=600)


def test_an_unset_secret_draws_a_random_one_per_process() -> None:
    one = SessionSigner.from_secret_setting("", ttl_s=60)
    two = SessionSigner.from_secret_setting("", ttl_s=60)
    assert two.loads(one.dumps(one.new_anonymous())) is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/console/deals?q=x", "/console/deals?q=x"),
        ("/console", "/console"),
        ("https://evil.example/console", "/console"),
        ("//evil.example/console", "/console"),
        ("/api/v1/contacts", "/console"),
        ("/console\\@evil", "/console"),
        ("/consoleevil", "/console"),
        (None, "/console"),
    ],
)
def test_sign_in_only_returns_to_pages_of_the_console(path: str | None, expected: str) -> None:
    assert safe_next(path) == expected


def test_charts_escape_labels_and_scale_to_the_largest_value() -> None:
    svg = charts.bar_chart("Pipeline <by> stage", [charts.Bar("<script>", 50.0), charts.Bar("Won & lost", 100.0)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "Won &amp; lost" in svg
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', svg)]
    assert widths[1] == pytest.approx(2 * widths[0])
    assert 'role="img"' in svg and 'aria-label="Pipeline &lt;by&gt; stage"' in svg
    assert "No data" in charts.bar_chart("t", [])
    band = charts.band_chart("Forecast", [charts.Band("2027-01", 10.0, 20.0, 40.0), charts.Band("2027-02", 0, 0, 0)])
    assert band.count("<rect") == 2 and "P10 10, P50 20, P90 40" in band
    assert charts.sparkline("history", [50.0]) == ""  # one point is no line
    assert "polyline" in charts.sparkline("history", [10.0, 60.0, 40.0])


def test_money_labels_are_compact() -> None:
    assert [charts.money(v) for v in (950, 1500, 12_500, 3_200_000, -2_000)] == ["950", "1.5k", "12k", "3.2M", "-2.0k"]


def test_a_reviewers_edit_keeps_the_proposed_values_type() -> None:
    assert parse_edit("Negotiation", " Proposal ") == "Proposal"
    assert parse_edit(120000, "125000") == "125000"  # the CRM schema coerces and checks it
    assert parse_edit(True, "false") is False and parse_edit(False, "yes") is True
    assert parse_edit({"tier": "gold"}, '{"tier": "silver"}') == {"tier": "silver"}
    assert parse_edit("anything", "") is None
    with pytest.raises(ValidationFailed):
        parse_edit({"tier": "gold"}, "{not json")
    assert field_text(None) == "" and field_text({"a": 1}) == '{"a": 1}' and field_text(3) == "3"


def test_the_vendored_files_are_the_ones_vendored_md_names() -> None:
    listed = dict(re.findall(r"\| `([\w.]+\.js)` \|.*\| ([0-9a-f]{64}) \|", STATIC.joinpath("VENDORED.md").read_text()))
    assert set(listed) == {"htmx.min.js", "sse.min.js"}
    for name, digest in listed.items():
        assert hashlib.sha256(STATIC.joinpath(name).read_bytes()).hexdigest() == digest, name
