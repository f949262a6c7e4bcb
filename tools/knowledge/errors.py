"""Errors of the knowledge index that mean it cannot be used right now; each message names the
file or the cluster and what to do, so the CLI prints it as one line (exit 2)."""

from __future__ import annotations


class KnowledgeIndexError(Exception):
    """The knowledge index cannot be read or written."""


class IndexDamaged(KnowledgeIndexError):
    """The embedded index on disk cannot be read as it was written."""


class ClusterError(KnowledgeIndexError):
    """The OpenSearch cluster could not be reached, refused a request or answered with
    something that is not a search response. `transient`: the same request may work later."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
