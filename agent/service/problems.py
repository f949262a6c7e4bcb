"""Errors as RFC 9457 problem documents (`application/problem+json`), for every failure path:
our own refusals, FastAPI's validation errors, Starlette's 404/405, and anything unexpected."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.db import UNAVAILABLE_ERRORS, unavailable_reason

log = structlog.get_logger(__name__)

PROBLEM_TYPE = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    502: "Bad gateway",
    500: "Internal error",
    503: "Not ready",
}


class Problem(BaseModel):
    """The error body every endpoint uses."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


# The error responses every API operation documents (OpenAPI), all as problem documents.
PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"description": TITLES[code], "content": {PROBLEM_TYPE: {"schema": Problem.model_json_schema()}}}
    for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}
DATABASE_RETRY_AFTER_S = 5


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors


def problem_response(status: int, detail: str, headers: dict[str, str] | None = None, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body = Problem(title=TITLES.get(status, "Error"), status=status, detail=detail, errors=errors)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers, media_type=PROBLEM_TYPE)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))} for error in exc.errors()]


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, exc.detail, exc.headers, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        detail = "; ".join(f"{'.'.join(e['loc']) or 'request'}: {e['msg']}" for e in errors)[:1000]
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(400, f"the body is not valid JSON: {detail}", errors=errors)
        return problem_response(422, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    for unavailable in UNAVAILABLE_ERRORS:

        @app.exception_handler(unavailable)
        async def _database_down(request: Request, exc: Exception) -> JSONResponse:
            """Unreachable or locked: the client may try again; what is stored stays stored."""
            log.error("database unavailable", path=request.url.path, error=unavailable_reason(exc))
            headers = {"Retry-After": str(DATABASE_RETRY_AFTER_S)}
            return problem_response(503, "the database is unavailable; nothing was changed, try again shortly", headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem_response(500, "an internal error occurred; it has been logged")
