"""Reading and parsing untrusted files so that hostile input fails like any other bad input.

Reads are bounded before they happen (`/dev/zero` or a 20 GB log ends in an error, not in
memory). A YAML alias bomb turns a few hundred bytes into gigabytes, deep nesting exhausts the
interpreter's recursion, and a 5,000-digit JSON integer exceeds what Python converts. Here each
becomes the parser's own error type (`yaml.YAMLError`, `json.JSONDecodeError`), so every caller's
existing handler turns it into a one-line message naming the file.
"""

from __future__ import annotations

import errno
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader without aliases: caseplan's files never need them, and they are how a small
    document expands without bound."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: ANN401 (PyYAML's untyped API)
        if self.check_event(yaml.AliasEvent):
            raise ComposerError(None, None, "YAML aliases (*name) are not supported", self.peek_event().start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:  # noqa: ANN401 (any YAML document)
    """`yaml.safe_load` without aliases; too-deep nesting raises `yaml.YAMLError` too."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise yaml.YAMLError("the document is nested too deeply") from None


def compose_yaml(text: str) -> yaml.Node | None:
    """The node tree (for line numbers), under the same rules as `load_yaml`."""
    try:
        return yaml.compose(text, Loader=_NoAliasLoader)
    except RecursionError:
        raise yaml.YAMLError("the document is nested too deeply") from None


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: what is wrong and on which line (PyYAML's own text spans
    several lines and quotes the document)."""
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}" if mark is not None else problem


def load_json(text: str) -> Any:  # noqa: ANN401 (any JSON document)
    """`json.loads` whose every failure is a `json.JSONDecodeError`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    except ValueError:  # an integer with more digits than Python converts (4,300)
        raise json.JSONDecodeError("a number has too many digits", text, 0) from None


MAX_TEXT_FILE_BYTES = 16 * 1024 * 1024  # templates, policies, configs, case files, reports


def check_regular(path: Path) -> None:
    """OSError unless `path` is a regular file: a FIFO blocks the open or read, a device such as
    /dev/zero never ends. The OSError carries the reason as `strerror`, like any unreadable file."""
    if not stat.S_ISREG(path.stat().st_mode):
        raise OSError(errno.EINVAL, "not a regular file (a pipe, device or socket is not read)", str(path))


def read_text_file(path: Path, max_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """A user-named file's UTF-8 text, read only if it is a regular file of at most `max_bytes`.
    Too large or not regular: OSError (its `strerror` says which); not UTF-8: UnicodeDecodeError,
    so callers' existing handlers for unreadable and undecodable files cover every case."""
    try:
        data = read_bounded(path, max_bytes)
    except ValueError as exc:
        raise OSError(errno.EFBIG, str(exc), str(path)) from None
    return data.decode("utf-8")


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The whole file when it is a regular file of at most `max_bytes`; ValueError, without
    reading the rest, when it holds more (OSError when it is not a regular file). Messages leave
    the path to the caller, which names it its own way."""
    check_regular(path)
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"larger than {max_bytes:,} bytes")
    return data


def line_items(path: Path, max_line_bytes: int) -> Iterator[tuple[int, str | ValueError]]:
    """Each line's number and its UTF-8 text, or the ValueError that keeps it out (longer than
    `max_line_bytes`, read past in bounded pieces if the caller reads on, or not UTF-8); the lines after a bad one still
    come. Messages name the line, not the path: the caller names it. OSError for a file that is
    not regular (a pipe or device)."""
    check_regular(path)
    with path.open("rb") as handle:
        number = 0
        while raw := handle.readline(max_line_bytes + 1):
            number += 1
            if len(raw) > max_line_bytes:
                yield number, ValueError(f"line {number} is longer than {max_line_bytes:,} bytes")
                while raw and not raw.endswith(b"\n"):  # only a caller that reads on gets here
                    raw = handle.readline(max_line_bytes + 1)
                continue
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, ValueError(f"line {number} is not UTF-8 (byte {exc.start})")


def bounded_lines(path: Path, max_line_bytes: int) -> Iterator[str]:
    """The file's lines as UTF-8 text, one at a time; the first line over `max_line_bytes` or
    not UTF-8 raises its ValueError."""
    for _, line in line_items(path, max_line_bytes):
        if isinstance(line, ValueError):
            raise line
        yield line
