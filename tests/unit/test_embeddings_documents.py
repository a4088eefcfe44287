"""The text that describes each record (pure: ORM objects never touch a database here)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from okyaku.db.models import Activity, Company, Contact, Deal
from okyaku.embeddings.documents import (
    MAX_CONTENT_CHARS,
    activity_document,
    company_document,
    contact_document,
    deal_document,
)


def test_a_company_text_has_its_descriptive_fields_and_no_ids():
    owner = uuid.uuid4()
    company = Company(
        id=uuid.uuid4(),
        version=3,
        name="Kestrel Logistics",
        domain="kestrel.example",
        industry="Freight forwarding",
        city="Rotterdam",
        country="Netherlands",
        employee_count=1200,
        annual_revenue=Decimal("45000000.00"),
        description="Container trucking.",
        owner_id=owner,
        custom_properties={"fleet_size": 300, "tier": "gold", "notes": ""},
    )
    document = company_document(company)
    assert document.content == (
        "Company: Kestrel Logistics\n"
        "Industry: Freight forwarding\n"
        "Location: Rotterdam, Netherlands\n"
        "Website: kestrel.example\n"
        "Size: 1,200 employees; annual revenue 45,000,000\n"
        "About: Container trucking.\n"
        "Fleet size: 300\n"
        "Tier: gold"
    )
    assert str(company.id) not in document.content and str(owner) not in document.content
    assert (document.entity_type, document.version, document.title) == ("company", 3, "Kestrel Logistics")


def test_the_hash_follows_the_text_only():
    a = Company(id=uuid.uuid4(), version=1, name="Same", custom_properties={})
    b = Company(id=uuid.uuid4(), version=7, name="Same", custom_properties={})
    c = Company(id=a.id, version=1, name="Other", custom_properties={})
    assert company_document(a).content_hash == company_document(b).content_hash
    assert company_document(a).content_hash != company_document(c).content_hash
    assert len(company_document(a).content_hash) == 64


def test_a_contact_text_names_the_person_their_role_and_company():
    contact = Contact(
        id=uuid.uuid4(),
        version=1,
        first_name="Lena",
        last_name="Vogel",
        email="lena@kestrel.example",
        phone="+31 10 000 0000",
        job_title="Procurement Manager",
        lifecycle_stage="opportunity",
        lead_status="in_progress",
        source="webinar",
        custom_properties={},
    )
    document = contact_document(contact, "Kestrel Logistics")
    assert document.title == "Lena Vogel"
    assert "Role: Procurement Manager at Kestrel Logistics" in document.content
    assert "Lifecycle stage: opportunity, lead status in progress" in document.content
    assert "+31" not in document.content
    anonymous = Contact(id=uuid.uuid4(), version=1, email="x@y.example", lifecycle_stage="lead", custom_properties={})
    assert contact_document(anonymous, None).title == "x@y.example"


def test_a_deal_text_has_its_company_stage_and_amount():
    deal = Deal(
        id=uuid.uuid4(),
        version=2,
        name="Fleet route optimization",
        amount=Decimal("90000.50"),
        currency="EUR",
        expected_close_date=date(2027, 3, 31),
        lost_reason=None,
        custom_properties={},
    )
    document = deal_document(
        deal,
        company_name="Kestrel Logistics",
        contact_name="Lena Vogel",
        stage_name="Proposal",
        pipeline_name="Sales",
        status="open",
    )
    assert document.content == (
        "Deal: Fleet route optimization\n"
        "Company: Kestrel Logistics\n"
        "Contact: Lena Vogel\n"
        "Stage: Proposal in the Sales pipeline (open)\n"
        "Amount: 90,000.50 EUR\n"
        "Expected close: 2027-03-31"
    )


def test_an_activity_text_carries_its_body_and_whom_it_was_with():
    activity = Activity(
        id=uuid.uuid4(),
        version=1,
        type="call",
        direction="outbound",
        subject=None,
        body="  Discussed   the renewal.\nThey want a discount.  ",
        occurred_at=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
        custom_properties={},
    )
    document = activity_document(activity, contact_name="Lena Vogel", company_name="Kestrel", deal_name="Fleet")
    assert document.title == "Call on 2026-11-02"
    assert document.content.splitlines()[:4] == [
        "Call (outbound): (no subject)",
        "Date: 2026-11-02",
        "With: Lena Vogel at Kestrel",
        "Deal: Fleet",
    ]
    assert "Discussed   the renewal.\nThey want a discount." in document.content


def test_long_texts_are_capped():
    company = Company(id=uuid.uuid4(), version=1, name="Long", description="word " * 5000, custom_properties={})
    assert len(company_document(company).content) == MAX_CONTENT_CHARS
