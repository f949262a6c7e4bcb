"""The console at /console: server-rendered pages (Jinja2) and plain HTML forms.

Agents work the escalation queue and answer approvals; auditors read runs, verify and export
them. Logging in stores the API key in an HttpOnly, SameSite=Strict cookie; every form carries a
token tied to that key (`console_forms`); every action goes through the same desk, approval and
audit functions as the JSON API, under the same roles."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, get_args
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from agent.audit import RunQuery, list_runs, report_run, run_timeline, utc_text
from agent.record import UnknownRunError
from agent.service.auth import COOKIE, actor, context, take_request
from agent.service.console_forms import TOKEN_FIELD, flash_signature, form_token, read_form
from agent.service.context import ServiceContext
from agent.service.desk import DeskError, EscalationStatus
from agent.service.models import ApiKey
from agent.service.problems import TITLES, ProblemError, problem_response
from agent.service.routes.approvals import decide
from agent.service.schemas import MAX_NOTE_CHARS, ResolveBody
from tools.escalation import Escalation

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _when(moment: datetime | None) -> str:
    """A stored time with its date and zone."""
    return "-" if moment is None else f"{utc_text(moment)} UTC"


templates.env.filters["shown"] = lambda value, indent=2: json.dumps(value, ensure_ascii=False, indent=indent, default=str)  # text as written; autoescaped
templates.env.filters["when"] = _when
Ctx = Annotated[ServiceContext, Depends(context)]
PAGE_ROWS = 100
# Console pages hold tickets and keys' work: never cached (Back after logging out shows
# nothing), never framed (clickjacking), and no Referer with run ids to other sites.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


class LoginRequired(Exception):
    """No (valid) console cookie: the page sends the browser to the login form."""


def install(app: FastAPI) -> None:
    """Console pages send a browser without a valid cookie to the login form, show errors as
    pages, and carry PAGE_HEADERS."""

    @app.exception_handler(LoginRequired)
    async def _login(_: Request, __: LoginRequired) -> RedirectResponse:
        return RedirectResponse("/console/login", status_code=303)

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        if not request.url.path.startswith("/console"):
            return problem_response(exc.status, exc.detail, exc.headers, exc.errors)
        title = TITLES.get(exc.status, "Error")
        return templates.TemplateResponse(request, "error.html", {"user": None, "title": title, "detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.middleware("http")
    async def _page_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/console"):
            response.headers.update(PAGE_HEADERS)
        return response


def console_user(request: Request) -> ApiKey:
    token = request.cookies.get(COOKIE)
    ctx = context(request)
    key = ctx.keys.session_key(token) if token else None
    if key is None:
        raise LoginRequired()
    take_request(ctx, key)
    return key


User = Annotated[ApiKey, Depends(console_user)]


def _allow(key: ApiKey, *roles: str) -> None:
    if key.role not in (*roles, "admin"):
        raise ProblemError(403, f"role {key.role!r} cannot use this page (allowed: {', '.join((*roles, 'admin'))})")


async def _form(request: Request) -> dict[str, str]:
    """A logged-in page's form (the caller is already authenticated by its cookie)."""
    return await read_form(request, request.cookies.get(COOKIE, ""))


def _page(request: Request, name: str, user: ApiKey | None, status_code: int = 200, **values: Any) -> HTMLResponse:
    secret = request.cookies.get(COOKIE)
    token = form_token(secret) if user is not None and secret else ""
    values["flash"] = values.get("flash") or _signed_flash(request, secret)
    return templates.TemplateResponse(request, name, {"user": user, "token_field": TOKEN_FIELD, "token": token, **values}, status_code=status_code)


def _signed_flash(request: Request, secret: str | None) -> str:
    """The message `_back` put in the URL, when the console signed it for this session; else none."""
    message, signature = request.query_params.get("flash", ""), request.query_params.get("sig", "")
    if not (message and secret and hmac.compare_digest(signature, flash_signature(secret, message))):
        return ""
    return message


def _page_number(page: str) -> int:
    """A page number from the query; anything else is the first page."""
    return int(page) if page.isascii() and page.isdigit() and 0 < len(page) <= 6 and int(page) > 0 else 1


def _back(request: Request, url: str, message: str) -> RedirectResponse:
    """Back to a page that says `message` (signed, so only the console's own messages show)."""
    signature = flash_signature(request.cookies.get(COOKIE, ""), message)
    return RedirectResponse(f"{url}?flash={quote(message)}&sig={signature}", status_code=303)


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
    secret = (await read_form(request, None)).get("key", "").strip()
    key = ctx.keys.verify(secret) if secret else None
    if key is None or key.role not in ("agent", "auditor", "admin"):
        return templates.TemplateResponse(request, "login.html", {"user": None, "error": "That key is unknown, revoked, or not an agent, auditor or admin key."}, status_code=401)
    token = ctx.keys.open_session(key, timedelta(seconds=ctx.runtime.settings.service.console_session_s))
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


@router.post("/logout")
async def logout(request: Request, ctx: Ctx) -> Response:
    await _form(request)
    ctx.keys.close_session(request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/escalations", response_class=HTMLResponse)
def escalations(request: Request, user: User, ctx: Ctx, status: str = "open", queue: str = "", page: str = "1") -> HTMLResponse:
    _allow(user, "agent")
    number = _page_number(page)
    statuses, flash = get_args(EscalationStatus), ""
    if status not in (*statuses, "all"):
        flash, status = f"There is no status {status!r}; showing open escalations.", "open"
    rows = ctx.desk.list(status if status in statuses else None, queue or None, PAGE_ROWS + 1, (number - 1) * PAGE_ROWS)
    more = len(rows) > PAGE_ROWS
    rows = rows[:PAGE_ROWS]
    return _page(request, "escalations.html", user, rows=rows, status=status, statuses=[*statuses, "all"], queue=queue, page=number, more=more, flash=flash, me=actor(user))


def _evidence(ctx: ServiceContext, run_id: str) -> dict[str, Any]:
    """The run as the record shows it (masked): route, plan, timeline, retrieved passages."""
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
def escalation(request: Request, escalation_id: str, user: User, ctx: Ctx) -> HTMLResponse:
    _allow(user, "agent")
    try:
        row = ctx.desk.get(escalation_id)
    except DeskError as exc:
        raise ProblemError(exc.status, exc.message) from None
    return _escalation_page(request, user, ctx, row)


def _escalation_page(request: Request, user: ApiKey, ctx: Ctx, row: Escalation, flash: str = "", draft: dict[str, str] | None = None) -> HTMLResponse:
    """The escalation with the ticket as the customer wrote it (the person handling it needs
    the original; the record's copy is masked), and, after a refused resolve, what was typed."""
    evidence = _evidence(ctx, row.run_id)
    ticket = ctx.runtime.store.original_ticket(row.run_id)
    values = {"row": row, "flash": flash, "me": actor(user), "draft": draft or {}, "history": ctx.desk.history(row.id), "original": ticket}
    return _page(request, "escalation.html", user, status_code=422 if draft else 200, **values, **evidence)


@router.post("/escalations/{escalation_id}/{action}")
async def escalation_action(request: Request, escalation_id: str, action: str, user: User, ctx: Ctx) -> Response:
    _allow(user, "agent")
    form = await _form(request)
    here = f"/console/escalations/{escalation_id}"
    draft = {"resolution": form.get("resolution", ""), "reply": form.get("reply", "")}
    try:
        if action == "claim":
            ctx.desk.claim(escalation_id, actor(user))
            return _back(request, here, "Claimed.")
        if action == "release":
            ctx.desk.release(escalation_id, actor(user), admin=user.role == "admin")
            return _back(request, "/console/escalations", "Released.")
        if action == "resolve":
            try:
                body = ResolveBody(resolution=draft["resolution"], reply=draft["reply"].strip() or None)
            except ValidationError as exc:
                problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                return _escalation_page(request, user, ctx, ctx.desk.get(escalation_id), problem, draft)
            ctx.desk.resolve(escalation_id, actor(user), body.resolution, body.reply)
            return _back(request, here, "Resolved.")
    except DeskError as exc:
        if action == "resolve" and exc.status != 404:  # keep what the agent typed
            return _escalation_page(request, user, ctx, ctx.desk.get(escalation_id), exc.message, draft)
        return _back(request, here, exc.message)
    raise ProblemError(404, f"unknown action {action!r}")


@router.get("/approvals", response_class=HTMLResponse)
def approvals(request: Request, user: User, ctx: Ctx) -> HTMLResponse:
    _allow(user, "agent")
    rows = ctx.runtime.store.approvals(status="pending")
    tickets = {row.run_id: ctx.runtime.store.original_ticket(row.run_id) for row in rows}  # what the approver decides about
    return _page(request, "approvals.html", user, rows=rows, tickets=tickets)


@router.post("/approvals/{approval_id}")
async def answer_approval(request: Request, approval_id: str, user: User, ctx: Ctx) -> Response:
    _allow(user, "agent")
    form = await _form(request)
    decision, note = form.get("decision"), form.get("note", "")
    if decision not in ("approve", "reject"):
        return _back(request, "/console/approvals", "Choose approve or reject.")
    if len(note) > MAX_NOTE_CHARS:
        return _back(request, "/console/approvals", f"The note has {len(note)} characters; at most {MAX_NOTE_CHARS} are kept. Nothing was decided.")
    try:
        row = decide(ctx, approval_id, decision == "approve", user, note)
    except ProblemError as exc:
        return _back(request, "/console/approvals", exc.detail)
    return _back(request, f"/console/runs/{row.run_id}", f"{'Approved' if decision == 'approve' else 'Rejected'}; the run continues.")


@router.get("/runs", response_class=HTMLResponse)
def runs(request: Request, user: User, ctx: Ctx, status: str = "", page: str = "1") -> HTMLResponse:
    _allow(user, "agent", "auditor")
    number = _page_number(page)
    rows = list_runs(ctx.audit, RunQuery(status=status or None, limit=PAGE_ROWS + 1, offset=(number - 1) * PAGE_ROWS))
    return _page(request, "runs.html", user, rows=rows[:PAGE_ROWS], status=status, page=number, more=len(rows) > PAGE_ROWS)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run(request: Request, run_id: str, user: User, ctx: Ctx, verify: str = "") -> HTMLResponse:
    _allow(user, "agent", "auditor")
    try:
        evidence = _evidence(ctx, run_id)
    except UnknownRunError:
        raise ProblemError(404, f"unknown run id {run_id!r}") from None
    report = report_run(ctx.audit, run_id) if verify and user.role in ("auditor", "admin") else None
    return _page(request, "run.html", user, report=report, **evidence)
