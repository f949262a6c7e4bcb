"""API keys: created once (the secret is shown then and never stored), verified by hash, revoked."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from agent.service.models import ROLES, ApiKey, ConsoleSession, utcnow

KEY_PREFIX = "cpk_"
SESSION_PREFIX = "cps_"


class KeyStoreError(ValueError):
    """A key operation that cannot be done; the message says why."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, role: str, name: str) -> tuple[ApiKey, str]:
        """A new key with `role`; returns the row and the secret (the only time it exists in clear)."""
        if role not in ROLES:
            raise KeyStoreError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        if not name.strip():
            raise KeyStoreError("a key needs a name")
        key_id = f"key_{secrets.token_hex(6)}"
        secret = f"{KEY_PREFIX}{secrets.token_urlsafe(32)}"
        row = ApiKey(id=key_id, name=name.strip(), role=role, secret_hash=hash_secret(secret))
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(row)
            session.commit()
        return row, secret

    def verify(self, secret: str) -> ApiKey | None:
        """The live key with this secret, or None (unknown or revoked)."""
        if not secret.startswith(KEY_PREFIX):
            return None
        with Session(self.engine) as session:
            row = session.exec(select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret))).first()
        return row if row is not None and row.revoked_at is None else None

    def open_session(self, key: ApiKey, lifetime: timedelta) -> str:
        """A console session for `key`; returns its token (stored only as a hash). Expired
        sessions are swept here, so the table holds live ones only."""
        token = f"{SESSION_PREFIX}{secrets.token_urlsafe(32)}"
        now = utcnow()
        with Session(self.engine) as session:
            session.exec(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
            session.add(ConsoleSession(token_hash=hash_secret(token), key_id=key.id, created_at=now, expires_at=now + lifetime))
            session.commit()
        return token

    def session_key(self, token: str) -> ApiKey | None:
        """The live key behind an unexpired console session, or None."""
        if not token.startswith(SESSION_PREFIX):
            return None
        with Session(self.engine) as session:
            live = select(ConsoleSession.key_id).where(ConsoleSession.token_hash == hash_secret(token), ConsoleSession.expires_at > utcnow())
            key_id = session.exec(live).first()
            row = session.get(ApiKey, key_id) if key_id is not None else None
        return row if row is not None and row.revoked_at is None else None

    def close_session(self, token: str) -> None:
        """Logging out: the session ends on the server, not only in the browser."""
        with Session(self.engine) as session:
            session.exec(delete(ConsoleSession).where(ConsoleSession.token_hash == hash_secret(token)))
            session.commit()

    def list(self) -> Sequence[ApiKey]:
        with Session(self.engine) as session:
            return session.exec(select(ApiKey).order_by(ApiKey.created_at)).all()

    def revoke(self, key_id: str) -> ApiKey:
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                raise KeyStoreError(f"unknown key id {key_id!r}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                session.add(row)
                session.commit()
            return row
