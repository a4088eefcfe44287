"""Who may call the API: an organization's API keys and users, managed by its admins.

Routes of the ``crm_api`` function. Every route needs an admin's key (403 otherwise); a key is
shown once, when it is created, and only its prefix afterwards."""

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from okyaku.crm.schemas import Email
from okyaku.http import PrincipalDep, RuntimeDep
from okyaku.tenancy import (
    ApiKeyInfo,
    UserInfo,
    create_user,
    deactivate_user,
    issue_api_key,
    list_api_keys,
    list_users,
    require_admin,
    revoke_api_key,
)


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    key_prefix: str = Field(description="the key's first characters, to recognise it")
    user_id: uuid.UUID | None
    user_email: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    user_id: uuid.UUID | None = Field(default=None, description="the user the key acts as (default: your own user)")


class ApiKeyCreated(ApiKeyOut):
    api_key: str = Field(description="the key itself: shown this once, store it now")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    role: str
    created_at: datetime
    deactivated_at: datetime | None


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "member"] = "member"


router = APIRouter(prefix="/api/v1", tags=["access"])


@router.get("/users", response_model=list[UserOut], summary="List the organization's users")
def get_users(runtime: RuntimeDep, principal: PrincipalDep) -> list[UserInfo]:
    require_admin(principal, "list users")
    return list_users(runtime.db, principal.organization_id)


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED, summary="Add a user")
def post_user(body: UserCreate, runtime: RuntimeDep, principal: PrincipalDep) -> UserInfo:
    require_admin(principal, "add users")
    return create_user(runtime.db, principal.organization_id, body.email, body.name, body.role)


@router.get("/api-keys", response_model=list[ApiKeyOut], summary="List the organization's API keys")
def get_api_keys(runtime: RuntimeDep, principal: PrincipalDep) -> list[ApiKeyInfo]:
    require_admin(principal, "list API keys")
    return list_api_keys(runtime.db, principal.organization_id)


@router.post(
    "/api-keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED, summary="Create an API key"
)
def post_api_key(body: ApiKeyCreate, runtime: RuntimeDep, principal: PrincipalDep) -> ApiKeyCreated:
    require_admin(principal, "create API keys")
    key, info = issue_api_key(runtime.db, principal.organization_id, body.name, body.user_id or principal.user_id)
    return ApiKeyCreated(**ApiKeyOut.model_validate(info).model_dump(), api_key=key)


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, summary="Revoke an API key (at once, for good)")
def delete_api_key(key_id: uuid.UUID, runtime: RuntimeDep, principal: PrincipalDep) -> ApiKeyInfo:
    require_admin(principal, "revoke API keys")
    return revoke_api_key(runtime.db, principal.organization_id, key_id)


@router.post(
    "/users/{user_id}/deactivate",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Deactivate a user: their API keys stop working at once",
)
def post_deactivate_user(user_id: uuid.UUID, runtime: RuntimeDep, principal: PrincipalDep) -> None:
    require_admin(principal, "deactivate users")
    deactivate_user(runtime.db, principal.organization_id, user_id)
