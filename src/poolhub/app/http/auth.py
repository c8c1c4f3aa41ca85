"""Bearer-token roles: coordinator and operator routes are guarded here; miners authenticate in use cases."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from poolhub.domain.ports import LiveState
from poolhub.domain.security import hash_token, same_secret


class Role(StrEnum):
    COORDINATOR = "coordinator"
    OPERATOR = "operator"


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@dataclass(frozen=True, slots=True)
class RoleSecrets:
    coordinator: str
    operator: str


def check_role(token: str | None, role: Role, secrets: RoleSecrets, directory: LiveState) -> None:
    """401 for a missing or unknown token, 403 for a valid token of another role."""
    if token is None:
        raise NotAuthorizedException(
            detail=f"missing bearer token: this route needs the {role.value} token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    expected = secrets.coordinator if role is Role.COORDINATOR else secrets.operator
    other = secrets.operator if role is Role.COORDINATOR else secrets.coordinator
    if same_secret(token, expected):
        return
    if same_secret(token, other) or directory.miner_for_token(hash_token(token)) is not None:
        raise PermissionDeniedException(detail=f"this route is for the {role.value} role only")
    raise NotAuthorizedException(
        detail=f"invalid bearer token: this route needs the {role.value} token",
        headers={"WWW-Authenticate": "Bearer"},
    )


def require(role: Role) -> object:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        state = connection.app.state
        resolved = state.get("role_check")
        if resolved is None:  # resolved once per app: a guard runs on every coordinator and operator call
            container = state.dishka_container
            resolved = state["role_check"] = (
                await container.get(RoleSecrets),
                await container.get(LiveState),
            )
        check_role(_authorization(connection.scope), role, *resolved)

    return guard


def _authorization(scope: Any) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bearer_token(value.decode("latin-1"))
    return None
