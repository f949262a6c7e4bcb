"""Who is calling: an API key (Authorization: Bearer, X-API-Key, or the console's session cookie),
its role checked per endpoint, its rate limited per key."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from agent.service.context import ServiceContext
from agent.service.models import ApiKey
from agent.service.problems import ProblemError
from agent.service.request_rules import refuse_unknown_query

COOKIE = "caseplan_session"
SAFE_METHODS = frozenset({"GET", "HEAD"})
_bearer = HTTPBearer(auto_error=False, description="An API key: `caseplan keys create --role R --name N`.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def context(request: Request) -> ServiceContext:
    return request.app.state.ctx


def caller(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    header: str | None = Depends(_header),
) -> ApiKey:
    """The live key behind the request, rate limited; 401 without one, 429 over the limit. The
    console's session cookie counts only for reads (an export link): a browser sends it with a
    form posted from another port of the same site, so changes need the key in a header."""
    cookie = request.cookies.get(COOKIE) if request.method in SAFE_METHODS else None
    secret = (bearer.credentials if bearer else None) or header
    if not (secret or cookie):
        raise ProblemError(401, "an API key is required (Authorization: Bearer <key> or X-API-Key)", headers={"WWW-Authenticate": "Bearer"})
    ctx = context(request)
    key = ctx.keys.verify(secret) if secret else ctx.keys.session_key(cookie or "")
    if key is None:
        raise ProblemError(401, "the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
    take_request(ctx, key)
    return key


def take_request(ctx: ServiceContext, key: ApiKey) -> None:
    """Count one request against the key's rate limit (API and console alike); 429 over it."""
    wait = ctx.limiter.take(key.id)
    if wait:
        raise ProblemError(429, f"rate limit for key {key.id} exceeded; retry in {wait:.2f}s", headers={"Retry-After": str(max(1, round(wait)))})


def require(*roles: str) -> Callable[..., ApiKey]:
    """A dependency that admits these roles (and admin); 403 for any other role, then 422
    for query parameters the endpoint does not take."""
    allowed = frozenset(roles) | {"admin"}

    def dependency(request: Request, key: ApiKey = Depends(caller)) -> ApiKey:
        if key.role not in allowed:
            raise ProblemError(403, f"role {key.role!r} may not do this (allowed: {', '.join(sorted(allowed))})")
        refuse_unknown_query(request)  # checked once the caller may use the endpoint at all
        return key

    return dependency


def actor(key: ApiKey) -> str:
    """How a person appears in claims and approvals: the key's name and id (names may repeat)."""
    return f"{key.name} ({key.id})"
