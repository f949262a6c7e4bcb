"""References inside step arguments.

`$steps.<id>.output.<path>` is an earlier step's output (resolved by the executor);
`$slots.<name>` is a template slot (replaced by the compiler). A string that starts with
`$$` is a literal `$`. Any other string that starts with `$steps.` or `$slots.` is malformed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

STEP_ID_PATTERN = r"[a-z][a-z0-9_]{0,47}"
_STEP_REF = re.compile(rf"^\$steps\.({STEP_ID_PATTERN})\.output((?:\.[A-Za-z0-9_]+)*)$")
_SLOT_REF = re.compile(rf"^\$slots\.({STEP_ID_PATTERN})$")


@dataclass(frozen=True)
class StepRef:
    step_id: str
    path: tuple[str, ...]

    def __str__(self) -> str:
        return "$steps." + ".".join((self.step_id, "output", *self.path))


@dataclass(frozen=True)
class SlotRef:
    name: str


class MalformedRef(ValueError):
    """A `$steps.`/`$slots.` string that does not follow the grammar."""


def parse_ref(value: Any) -> StepRef | SlotRef | None:
    """The reference a value denotes, None for a plain value; raises MalformedRef."""
    if not isinstance(value, str) or not value.startswith("$") or value.startswith("$$"):
        return None
    if match := _STEP_REF.match(value):
        return StepRef(match.group(1), tuple(part for part in match.group(2).split(".") if part))
    if match := _SLOT_REF.match(value):
        return SlotRef(match.group(1))
    if value.startswith(("$steps", "$slots")):
        raise MalformedRef(f"malformed reference {value!r} (expected $steps.<id>.output.<field> or $slots.<name>)")
    return None


def walk_refs(value: Any) -> Iterator[StepRef | SlotRef]:
    """Every reference inside a JSON-like value, depth first."""
    if isinstance(value, dict):
        for item in value.values():
            yield from walk_refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_refs(item)
    else:
        ref = parse_ref(value)
        if ref is not None:
            yield ref


_MISSING = object()


def substitute(value: Any, replace: Callable[[StepRef | SlotRef], Any]) -> Any:
    """Copy a JSON-like value with each reference replaced; `replace` may return `MISSING`
    to drop a dict entry (an optional slot that was not filled)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            new = substitute(item, replace)
            if new is not _MISSING:
                out[key] = new
        return out
    if isinstance(value, list):
        return [item for item in (substitute(v, replace) for v in value) if item is not _MISSING]
    ref = parse_ref(value)
    if ref is not None:
        return replace(ref)
    if isinstance(value, str) and value.startswith("$$"):
        return value[1:]
    return value


MISSING = _MISSING


def lookup_path(data: Any, path: tuple[str, ...]) -> Any:
    """Follow field names and list indices through plain data; KeyError names the missing part."""
    current = data
    for part in path:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise KeyError(part)
    return current
