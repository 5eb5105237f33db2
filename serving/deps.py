"""Dependencies of the routes, as `Annotated` aliases. Few and async: FastAPI runs a sync
dependency in a worker thread, and every node of the tree costs on every request."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serving.champion import LoadedModel
from serving.state import ServingState

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AQ_API_TOKEN",
    description="The token the service was started with (AQ_API_TOKEN).",
)


def service_of(request: Request) -> ServingState:
    service: ServingState | None = getattr(request.app.state, "service", None)
    if service is None:  # only without a lifespan, e.g. a test client used outside `with`
        raise HTTPException(503, "The service is starting.")
    return service


async def get_service(request: Request) -> ServingState:
    """The service, for the open endpoints."""
    return service_of(request)


@dataclass(frozen=True)
class Served:
    """What one authorized request works with: the service, and the model read once, so a
    swap cannot change it midway."""

    service: ServingState
    model: LoadedModel


SESSION_COOKIE = "aq_session"


def session_value(token: bytes) -> str:
    """What a signed-in browser's cookie holds: an HMAC of a fixed message under the token,
    so the cookie proves the token was known without being it, and stops working when the
    token changes."""
    return hmac.new(token, b"aq browser session", hashlib.sha256).hexdigest()


def signed_in(service: ServingState, request: Request) -> bool:
    """Whether the request carries a valid session cookie (or the service is open)."""
    expected = service.settings.token()
    if expected is None:
        return True
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(expected).encode())


def _check_token(service: ServingState, credentials: HTTPAuthorizationCredentials | None) -> None:
    """401 unless the bearer token matches (constant-time comparison); a service started
    open (AQ_API_OPEN=true) takes any request."""
    expected = service.settings.token()
    if expected is not None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if credentials is None or not hmac.compare_digest(given, expected):
            raise HTTPException(
                401,
                "Missing or wrong bearer token: send 'Authorization: Bearer <AQ_API_TOKEN>'.",
                headers={"WWW-Authenticate": "Bearer"},
            )


async def token_checked(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ServingState:
    """The service, once the bearer token or a browser's session cookie checks out, model or
    not (reports, files: pages a browser opens)."""
    service = service_of(request)
    if credentials is None and signed_in(service, request):
        return service
    _check_token(service, credentials)
    return service


async def authorized(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Served:
    """The service and its model, once the bearer token checks out: 401 otherwise; 503
    while no model is loaded. One dependency, not a chain: FastAPI's cost is per node, on
    every request."""
    service = service_of(request)
    _check_token(service, credentials)
    model = service.model
    if model is None:
        failure = service.model_failure
        raise HTTPException(
            503,
            f"No model loaded yet: waiting for {service.waiting_for or 'a loadable champion'}."
            + (f" Last load error: {failure.error}" if failure else ""),
        )
    return Served(service, model)


ServiceDep = Annotated[ServingState, Depends(get_service)]
ServedDep = Annotated[Served, Depends(authorized)]
TokenCheckedDep = Annotated[ServingState, Depends(token_checked)]
