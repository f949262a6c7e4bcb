"""Shared by the knowledge tests: a small article set and an embedder that counts its work."""

from __future__ import annotations

from datetime import date

from tools.knowledge.documents import Document

DOCS = [
    Document(id="ship", title="Shipping times", text="## Standard\nStandard shipping takes three to seven business days.", source="kb", product="orders", updated=date(2026, 1, 5)),
    Document(id="refund", title="Refunds", text="## Timing\nRefunds reach your card within five business days after we receive the parcel.", source="kb", product="payments", updated=date(2026, 3, 1)),
    Document(id="2fa", title="Two-factor authentication", text="## Lost phone\nIf you lose the phone with your authenticator app, use a backup code to sign in.", source="kb", product="accounts", updated=date(2026, 6, 9)),
    Document(id="lock", title="Locked accounts", text="## Why\nAn account locks after ten failed sign-in attempts in a row.", source="kb", product="accounts", updated=date(2025, 12, 1)),
]


class CountingEmbedder:
    """Delegates to the real embedder and remembers how many texts it embedded."""

    def __init__(self, inner, fail_after: int | None = None) -> None:
        self.inner, self.model_id, self.dim = inner, inner.model_id, inner.dim
        self.texts: list[str] = []
        self.fail_after = fail_after

    def embed(self, texts):
        if self.fail_after is not None and len(self.texts) >= self.fail_after:
            raise RuntimeError("embedding service went away")
        self.texts.extend(texts)
        return self.inner.embed(texts)


class HashEmbedder:
    """Unit vectors derived from each text's SHA-256: deterministic in every process, no model
    to load, for tests about the index's files rather than its ranking."""

    model_id = "sha256-test"
    dim = 8

    def embed(self, texts):
        import hashlib

        import numpy as np

        rows = np.array([list(hashlib.sha256(t.encode()).digest()[: self.dim]) for t in texts], dtype=np.float32) + 1
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)
