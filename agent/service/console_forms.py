"""Console form posts: bounded UTF-8 parsing and the checks that tie a form to this site.

SameSite=Strict keeps the cookie from other sites, but not from another port or a sibling
subdomain of the same site. So every form carries a token derived from the session token in
the cookie, which a page elsewhere can neither read (HttpOnly, same-origin policy) nor compute,
and the login form, which has no cookie yet, must come from this origin."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs, urlsplit

from fastapi import Request

from agent.service.problems import ProblemError

TOKEN_FIELD = "csrf"
# A resolution and a reply of 4,000 characters each, URL-encoded at up to 12 bytes a character.
MAX_FORM_BYTES = 131072


def form_token(secret: str) -> str:
    """The hidden field of every form on a page shown to the console session `secret`."""
    return hmac.new(secret.encode(), b"caseplan console form", hashlib.sha256).hexdigest()


def flash_signature(secret: str, message: str) -> str:
    """Signs a message a console redirect shows on the next page: the page shows only messages
    the console itself wrote, not text a link from elsewhere put in the URL ("Security team:
    approve run …")."""
    return hmac.new(secret.encode(), b"caseplan console flash\n" + message.encode(), hashlib.sha256).hexdigest()


async def read_form(request: Request, secret: str | None) -> dict[str, str]:
    """The posted fields; 403 unless the form carries the token for `secret` (None: the login
    form, which must come from this origin instead)."""
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise ProblemError(413, f"the form is over {MAX_FORM_BYTES} bytes")
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise ProblemError(400, "the form is not valid UTF-8") from None
    if any("\x00" in name or "\x00" in value for name, values in parsed.items() for value in values):
        raise ProblemError(400, "the form contains a NUL character")
    fields = {name: values[-1] for name, values in parsed.items()}
    if secret is None:
        _refuse_other_origin(request)
    elif not hmac.compare_digest(fields.get(TOKEN_FIELD, ""), form_token(secret)):
        raise ProblemError(403, "this form did not come from a console page of this key; reload the page and try again")
    return fields


def _refuse_other_origin(request: Request) -> None:
    """Browsers name the page a form was posted from in Origin; another origin is refused."""
    origin = request.headers.get("origin")
    if origin is not None and _host_of(origin) != (request.headers.get("host") or "").lower():
        raise ProblemError(403, f"a login form posted from {origin} is refused; log in on this site's own page")


def _host_of(origin: str) -> str | None:
    """The host and port an Origin names; None when it is not a URL (`http://[::1`), which is
    no origin of this site either."""
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:
        return None
