"""Typed tools: the only way caseplan touches the outside world."""

from tools.base import Tool, ToolContext, ToolError, ToolErrorKind
from tools.registry import ToolRegistry, UnknownToolError

__all__ = ["Tool", "ToolContext", "ToolError", "ToolErrorKind", "ToolRegistry", "UnknownToolError"]
