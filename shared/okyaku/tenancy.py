"""Organizations, users and API keys: provisioning and authentication."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from okyaku.db import Database
from okyaku.db.models import ApiKey, Organization, User
from okyaku.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed, field_error

API_KEY_PREFIX = "oky_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the organization every query is scoped to."""

    organization_id: uuid.UUID
    user_id: uuid.UUID | None
    api_key_id: uuid.UUID
    role: str = "member"  # the key's user's role; a key made for no user (a service key) is a member

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def require_admin(principal: Principal, what: str) -> None:
    """403 unless the caller's key belongs to an admin of the organization."""
    if not principal.is_admin:
        raise Forbidden(f"only an organization admin may {what}", details={"role": principal.role})


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


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown of a key: never the key itself, only its first characters."""

    id: uuid.UUID
    name: str
    key_prefix: str
    user_id: uuid.UUID | None
    user_email: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def create_api_key(db: Database, organization_id: uuid.UUID, name: str, user_id: uuid.UUID | None = None) -> str:
    """A new key (returned once; only its hash is kept) for ``user_id``, or a service key."""
    key, _ = issue_api_key(db, organization_id, name, user_id)
    return key


def issue_api_key(
    db: Database, organization_id: uuid.UUID, name: str, user_id: uuid.UUID | None = None
) -> tuple[str, ApiKeyInfo]:
    """The new key and what may be shown of it later."""
    key = generate_api_key()
    with db.organization_scope(organization_id) as session:
        email = None
        if user_id is not None:
            user = session.get(User, user_id)
            if user is None or user.deactivated_at is not None:
                raise ValidationFailed(
                    "no active user with that id", details=[field_error("user_id", "not an active user here")]
                )
            email = user.email
        row = ApiKey(
            organization_id=organization_id,
            user_id=user_id,
            name=name,
            key_prefix=key[:12],
            key_hash=hash_api_key(key),
        )
        session.add(row)
        session.flush()
        session.refresh(row)
        return key, _key_info(row, email)


USER_ROLES = ("admin", "member")


@dataclass(frozen=True)
class UserInfo:
    id: uuid.UUID
    email: str
    name: str
    role: str
    created_at: datetime
    deactivated_at: datetime | None


def create_user(db: Database, organization_id: uuid.UUID, email: str, name: str, role: str = "member") -> UserInfo:
    if role not in USER_ROLES:
        raise ValidationFailed("unknown role", details=[field_error("role", f"one of {', '.join(USER_ROLES)}")])
    with db.organization_scope(organization_id) as session:
        taken = session.scalar(select(User.id).where(func.lower(User.email) == email.strip().lower()))
        if taken is not None:
            raise Conflict(f"a user {email!r} exists already", details={"id": str(taken)})
        user = User(organization_id=organization_id, email=email.strip(), name=name, role=role)
        session.add(user)
        session.flush()
        session.refresh(user)
        return _user_info(user)


def list_users(db: Database, organization_id: uuid.UUID) -> list[UserInfo]:
    with db.organization_scope(organization_id) as session:
        return [_user_info(u) for u in session.scalars(select(User).order_by(User.created_at, User.id))]


def _user_info(user: User) -> UserInfo:
    return UserInfo(user.id, user.email, user.name, user.role, user.created_at, user.deactivated_at)


def find_user_id(db: Database, organization_id: uuid.UUID, email: str) -> uuid.UUID:
    with db.organization_scope(organization_id) as session:
        user_id = session.scalar(select(User.id).where(func.lower(User.email) == email.strip().lower()))
    if user_id is None:
        raise NotFound(f"no user {email!r} in this organization", details={"email": email})
    return user_id


def list_api_keys(db: Database, organization_id: uuid.UUID) -> list[ApiKeyInfo]:
    with db.organization_scope(organization_id) as session:
        rows = session.execute(
            select(ApiKey, User.email).outerjoin(User, User.id == ApiKey.user_id).order_by(ApiKey.created_at, ApiKey.id)
        ).all()
        return [_key_info(key, email) for key, email in rows]


def revoke_api_key(db: Database, organization_id: uuid.UUID, key_id: uuid.UUID) -> ApiKeyInfo:
    """Revoke a key of the organization; revoking it again keeps the first revocation time."""
    with db.organization_scope(organization_id) as session:
        key = session.get(ApiKey, key_id, with_for_update=True)
        if key is None:
            raise NotFound(f"API key {key_id} not found", details={"id": str(key_id)})
        if key.revoked_at is None:
            key.revoked_at = session.scalar(select(func.now()))
        email = session.scalar(select(User.email).where(User.id == key.user_id)) if key.user_id else None
        return _key_info(key, email)


def deactivate_user(db: Database, organization_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """The user's keys stop working at once (authentication checks the user)."""
    with db.organization_scope(organization_id) as session:
        user = session.get(User, user_id, with_for_update=True)
        if user is None:
            raise NotFound(f"user {user_id} not found", details={"id": str(user_id)})
        if user.deactivated_at is None:
            user.deactivated_at = session.scalar(select(func.now()))


def _key_info(key: ApiKey, email: str | None) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=key.id,
        name=key.name,
        key_prefix=key.key_prefix,
        user_id=key.user_id,
        user_email=email,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


def bearer_key(authorization: str | None) -> str:
    """The API key of ``Authorization: Bearer <key>``, or 401."""
    if not authorization:
        raise Unauthorized("missing Authorization header: use 'Bearer <api key>'")
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("malformed Authorization header: use 'Bearer <api key>'")
    return key


def authenticate(db: Database, authorization: str | None) -> Principal:
    """Resolve ``Authorization: Bearer <key>`` to its organization, or raise 401."""
    key = bearer_key(authorization)
    with db.session() as session:
        return authenticate_in(session, key)


def authenticate_in(session: Session, key: str) -> Principal:
    """Authenticate inside ``session``'s transaction, which is then scoped to the key's organization
    (a read can run in the same transaction: one BEGIN/COMMIT per request instead of two)."""
    # One round trip (migration 0013): finds the key by its hash under row-level security,
    # checks its user is active, records its use at most once a minute, sets the organization.
    row = session.execute(
        text("SELECT api_key_id, organization_id, user_id, role FROM okyaku_authenticate(:h)"),
        {"h": hash_api_key(key)},
    ).first()
    if row is None:
        raise Unauthorized("invalid or revoked API key")  # revoked, unknown or deactivated: the same answer
    return Principal(organization_id=row.organization_id, user_id=row.user_id, api_key_id=row.api_key_id, role=row.role)


def list_organization_ids(db: Database) -> list[uuid.UUID]:
    """Every organization, for scheduled jobs that visit each tenant in turn."""
    with db.session() as session:
        return list(session.scalars(select(Organization.id).order_by(Organization.created_at)))
