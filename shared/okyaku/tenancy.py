"""Organizations, users and API keys: provisioning and authentication."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select, text, update

from okyaku.db import Database, set_organization
from okyaku.db.models import ApiKey, Organization, User
from okyaku.errors import Unauthorized

API_KEY_PREFIX = "oky_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the organization every query is scoped to."""

    organization_id: uuid.UUID
    user_id: uuid.UUID | None
    api_key_id: uuid.UUID


@dataclass(frozen=True)
class NewOrganization:
    organization_id: uuid.UUID
    user_id: uuid.UUID
    api_key: str  # shown once; only its hash is stored


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def create_organization(db: Database, name: str, admin_email: str, admin_name: str = "Admin") -> NewOrganization:
    organization_id = uuid.uuid4()
    with db.organization_scope(organization_id) as session:
        session.add(Organization(id=organization_id, name=name))
        session.flush()
        user = User(organization_id=organization_id, email=admin_email, name=admin_name, role="admin")
        session.add(user)
        session.flush()
        key = generate_api_key()
        session.add(
            ApiKey(
                organization_id=organization_id,
                user_id=user.id,
                name="default",
                key_prefix=key[:12],
                key_hash=hash_api_key(key),
            )
        )
    return NewOrganization(organization_id=organization_id, user_id=user.id, api_key=key)


def create_api_key(db: Database, organization_id: uuid.UUID, name: str, user_id: uuid.UUID | None = None) -> str:
    key = generate_api_key()
    with db.organization_scope(organization_id) as session:
        session.add(
            ApiKey(
                organization_id=organization_id,
                user_id=user_id,
                name=name,
                key_prefix=key[:12],
                key_hash=hash_api_key(key),
            )
        )
    return key


def authenticate(db: Database, authorization: str | None) -> Principal:
    """Resolve ``Authorization: Bearer <key>`` to its organization, or raise 401."""
    if not authorization:
        raise Unauthorized("missing Authorization header: use 'Bearer <api key>'")
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("malformed Authorization header: use 'Bearer <api key>'")
    key_hash = hash_api_key(key)
    with db.session() as session:
        # RLS shows an api_keys row to whoever presents its hash, nothing else.
        session.execute(text("SELECT set_config('app.api_key_hash', :h, true)"), {"h": key_hash})
        row = session.execute(
            select(ApiKey.id, ApiKey.organization_id, ApiKey.user_id).where(
                ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)
            )
        ).first()
        if row is None:
            raise Unauthorized("invalid or revoked API key")
        set_organization(session, row.organization_id)
        # Record use at most once a minute: a write per request would cost more than it tells.
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == row.id)
            .where(text("last_used_at IS NULL OR last_used_at < now() - interval '1 minute'"))
            .values(last_used_at=text("now()"))
        )
    return Principal(organization_id=row.organization_id, user_id=row.user_id, api_key_id=row.id)


def list_organization_ids(db: Database) -> list[uuid.UUID]:
    """Every organization, for scheduled jobs that visit each tenant in turn."""
    with db.session() as session:
        return list(session.scalars(select(Organization.id).order_by(Organization.created_at)))
