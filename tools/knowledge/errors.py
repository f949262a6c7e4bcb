"""Errors of the knowledge index that mean it cannot be used right now; each message names the
file or the cluster and what to do, so the CLI prints it as one line (exit 2)."""

from __future__ import annotations


class KnowledgeIndexError(Exception):
    """The knowledge index cannot be read or written."""


class IndexDamaged(KnowledgeIndexError):
    """The embedded index on disk cannot be read as it was written."""


class ClusterError(KnowledgeIndexError):
    """The OpenSearch cluster could not be reached or refused a request."""
