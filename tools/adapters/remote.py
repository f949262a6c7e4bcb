"""What the REST adapters share: a lenient base for remote JSON, and 404s that name the record."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from tools.base import ToolError

ResultT = TypeVar("ResultT")


class RemoteModel(BaseModel):
    """The part of a remote API's JSON an adapter relies on; other fields are ignored, so an API
    that adds fields keeps working, and one that drops a needed field fails with its name."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def not_found_as(what: str, call: Callable[[], ResultT]) -> ResultT:
    """Run `call`; a 404 becomes "<what> not found", the message a person needs in the record."""
    try:
        return call()
    except ToolError as exc:
        if exc.status_code == 404:
            raise ToolError("permanent", f"{what} not found ({exc.message})", status_code=404) from None
        raise
