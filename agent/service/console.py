"""The console at /console: server-rendered pages (Jinja2) and plain HTML forms.

Agents work the escalation queue and answer approvals; auditors read runs, verify and export
them. Logging in stores the API key in an HttpOnly, SameSite=Strict cookie; every action goes
through the same desk, approval and audit functions as the JSON API, under the same roles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, get_args
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from agent.audit import RunQuery, list_runs, report_run, run_timeline
from agent.record import UnknownRunError
from agent.service.auth import COOKIE, actor, context, take_request
from agent.service.context import ServiceContext
from agent.service.desk import DeskError, EscalationStatus
from agent.service.models import ApiKey
from agent.service.problems import ProblemError
from agent.service.routes.approvals import decide
from agent.service.schemas import ResolveBody

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
Ctx = Annotated[ServiceContext, Depends(context)]
MAX_FORM_BYTES = 16384
ESCALATIONS_PAGE = 100


class LoginRequired(Exception):
    """No (valid) console cookie: the page sends the browser to the login form."""


def install(app: FastAPI) -> None:
    """Console pages send a browser without a valid cookie to the login form."""

    @app.exception_handler(LoginRequired)
    async def _login(_: Request, __: LoginRequired) -> RedirectResponse:
        return RedirectResponse("/console/login", status_code=303)


def console_user(request: Request) -> ApiKey:
    secret = request.cookies.get(COOKIE)
    ctx = context(request)
    key = ctx.keys.verify(secret) if secret else None
    if key is None:
        raise LoginRequired()
    take_request(ctx, key)
    return key


User = Annotated[ApiKey, Depends(console_user)]


def _allow(key: ApiKey, *roles: str) -> None:
    if key.role not in (*roles, "admin"):
        raise ProblemError(403, f"role {key.role!r} cannot use this page (allowed: {', '.join((*roles, 'admin'))})")


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise ProblemError(413, f"the form is over {MAX_FORM_BYTES} bytes")
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise ProblemError(400, "the form is not valid UTF-8") from None
    if any("\x00" in name or "\x00" in value for name, values in parsed.items() for value in values):
        raise ProblemError(400, "the form contains a NUL character")
    return {name: values[-1] for name, values in parsed.items()}


def _page(request: Request, name: str, user: ApiKey | None, **values: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"user": user, **values})


def _back(url: str, message: str = "") -> RedirectResponse:
    return RedirectResponse(f"{url}?flash={quote(message)}" if message else url, status_code=303)


@router.get("", response_class=HTMLResponse)
def home(request: Request) -> Response:
    try:
        user = console_user(request)
    except LoginRequired:
        return RedirectResponse("/console/login", status_code=303)
    return RedirectResponse("/console/runs" if user.role == "auditor" else "/console/escalations", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return _page(request, "login.html", None, error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, ctx: Ctx) -> Response:
    secret = (await _form(request)).get("key", "").strip()
    key = ctx.keys.verify(secret) if secret else None
    if key is None or key.role not in ("agent", "auditor", "admin"):
        return templates.TemplateResponse(request, "login.html", {"user": None, "error": "That key is unknown, revoked, or not an agent, auditor or admin key."}, status_code=401)
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(COOKIE, secret, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/escalations", response_class=HTMLResponse)
def escalations(request: Request, user: User, ctx: Ctx, status: str = "open", queue: str = "", page: str = "1", flash: str = "") -> HTMLResponse:
    _allow(user, "agent")
    number = int(page) if page.isascii() and page.isdigit() and 0 < len(page) <= 6 and int(page) > 0 else 1
    statuses = get_args(EscalationStatus)
    rows = ctx.desk.list(status if status in statuses else None, queue or None, ESCALATIONS_PAGE, (number - 1) * ESCALATIONS_PAGE)
    more = len(rows) == ESCALATIONS_PAGE
    return _page(request, "escalations.html", user, rows=rows, status=status, statuses=[*statuses, "all"], queue=queue, page=number, more=more, flash=flash, me=actor(user))


def _evidence(ctx: ServiceContext, run_id: str) -> dict[str, Any]:
    """The run as the agent needs it: route, plan, timeline, retrieved passages."""
    timeline = run_timeline(ctx.audit, run_id)
    plans = [e.payload.get("plan") or {} for e in timeline.events if e.kind == "plan" and isinstance(e.payload, dict)]  # the attempt, then any escalation plan
    passages = [
        passage
        for e in timeline.events
        if e.kind == "tool_result" and isinstance(e.payload, dict) and e.payload.get("tool") == "knowledge_search"
        for passage in ((e.payload.get("output") or {}).get("passages") or [])
    ]
    return {"timeline": timeline, "plans": plans, "passages": passages}


@router.get("/escalations/{escalation_id}", response_class=HTMLResponse)
def escalation(request: Request, escalation_id: str, user: User, ctx: Ctx, flash: str = "") -> HTMLResponse:
    _allow(user, "agent")
    try:
        row = ctx.desk.get(escalation_id)
    except DeskError as exc:
        raise ProblemError(exc.status, exc.message) from None
    return _page(request, "escalation.html", user, row=row, flash=flash, me=actor(user), **_evidence(ctx, row.run_id))


@router.post("/escalations/{escalation_id}/{action}")
async def escalation_action(request: Request, escalation_id: str, action: str, user: User, ctx: Ctx) -> Response:
    _allow(user, "agent")
    form = await _form(request)
    here = f"/console/escalations/{escalation_id}"
    try:
        if action == "claim":
            ctx.desk.claim(escalation_id, actor(user))
            return _back(here, "Claimed.")
        if action == "release":
            ctx.desk.release(escalation_id, actor(user))
            return _back("/console/escalations", "Released.")
        if action == "resolve":
            try:
                body = ResolveBody(resolution=form.get("resolution", ""), reply=form.get("reply", "").strip() or None)
            except ValidationError as exc:
                return _back(here, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
            ctx.desk.resolve(escalation_id, actor(user), body.resolution, body.reply)
            return _back(here, "Resolved.")
    except DeskError as exc:
        return _back(here, exc.message)
    raise ProblemError(404, f"unknown action {action!r}")


@router.get("/approvals", response_class=HTMLResponse)
def approvals(request: Request, user: User, ctx: Ctx, flash: str = "") -> HTMLResponse:
    _allow(user, "agent")
    return _page(request, "approvals.html", user, rows=ctx.runtime.store.approvals(status="pending"), flash=flash)


@router.post("/approvals/{approval_id}")
async def answer_approval(request: Request, approval_id: str, user: User, ctx: Ctx) -> Response:
    _allow(user, "agent")
    form = await _form(request)
    decision = form.get("decision")
    if decision not in ("approve", "reject"):
        return _back("/console/approvals", "Choose approve or reject.")
    try:
        row = decide(ctx, approval_id, decision == "approve", actor(user), form.get("note", "")[:2000])
    except ProblemError as exc:
        return _back("/console/approvals", exc.detail)
    return _back(f"/console/runs/{row.run_id}", f"{'Approved' if decision == 'approve' else 'Rejected'}; the run continues.")


@router.get("/runs", response_class=HTMLResponse)
def runs(request: Request, user: User, ctx: Ctx, status: str = "") -> HTMLResponse:
    _allow(user, "agent", "auditor")
    rows = list_runs(ctx.audit, RunQuery(status=status or None, limit=100))
    return _page(request, "runs.html", user, rows=rows, status=status)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run(request: Request, run_id: str, user: User, ctx: Ctx, flash: str = "", verify: str = "") -> HTMLResponse:
    _allow(user, "agent", "auditor")
    try:
        evidence = _evidence(ctx, run_id)
    except UnknownRunError:
        raise ProblemError(404, f"unknown run id {run_id!r}") from None
    report = report_run(ctx.audit, run_id) if verify and user.role in ("auditor", "admin") else None
    return _page(request, "run.html", user, flash=flash, report=report, **evidence)
