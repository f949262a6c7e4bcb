"""The set of tools a plan may name. Unknown names are refused, never guessed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tools.base import Tool


class UnknownToolError(KeyError):
    """A plan or template named a tool that is not registered."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = sorted(known)

    def __str__(self) -> str:
        return f"unknown tool {self.name!r} (known: {', '.join(self.known)})"


class ToolRegistry:
    """Tools by name; one instance per runtime, built from configuration."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownToolError(name, self._tools) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(sorted(self._tools.values(), key=lambda tool: tool.name))

    def names(self) -> list[str]:
        return sorted(self._tools)
