"""What every JSON API request must look like beyond its declared parameters.

Unknown query parameters are refused: FastAPI ignores them, so a mistyped filter
(`/v1/runs?statuss=failed`) would answer with every run, which a caller could take for the
filtered list. A body that is not JSON is 415, not a validation error about a dictionary."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from agent.service.problems import ProblemError


def refuse_unknown_query(request: Request) -> None:
    """422 naming each query parameter the matched endpoint does not declare."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = _declared(route)
    unknown = sorted({name for name in request.query_params if name not in declared})
    if unknown:
        takes = ", ".join(sorted(declared)) or "none"
        raise ProblemError(
            422,
            f"unknown query parameter(s): {', '.join(repr(name[:100]) for name in unknown[:20])}; this endpoint takes: {takes}",
            errors=[{"loc": ["query", name[:100]], "msg": "unknown query parameter", "type": "extra_forbidden"} for name in unknown[:20]],
        )


def _declared(route: APIRoute) -> frozenset[str]:
    """The query parameter names the endpoint and its dependencies declare (by alias): a walk
    over a handful of dependants, cheaper than caching them (routes are not hashable)."""
    names: set[str] = set()
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(field.alias for field in dependant.query_params)
        pending.extend(dependant.dependencies)
    return frozenset(names)


def json_body(request: Request) -> None:
    """415 unless the body is declared `application/json` (for endpoints that take a body)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ProblemError(415, f"the body must be application/json, not {kind or 'unspecified'}")
