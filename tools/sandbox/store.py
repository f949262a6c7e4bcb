"""The sandbox database: engine, sessions, demo seed and idempotent responses."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from tools.sandbox.models import SandboxIdempotency, SandboxTable

ModelT = TypeVar("ModelT", bound=BaseModel)


class SandboxStore:
    """One sandbox database; every sandbox tool shares it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._tables_made = False
        self._tables_lock = threading.Lock()

    def _make_tables(self) -> None:
        """Made on first use, not when the store is built: commands that only describe the tools
        (`tools list`, `plans validate`) then need no database at all."""
        with self._tables_lock:
            if self._tables_made:
                return
            # First runs at once race to create the tables of a new file, table by table: a loser
            # tries again and finds more of them made (each failure means one more table exists).
            for attempt in range(len(SandboxTable.metadata.tables) + 1):
                try:
                    SandboxTable.metadata.create_all(self.engine)
                    break
                except OperationalError as exc:
                    if "already exists" not in str(exc) or attempt == len(SandboxTable.metadata.tables):
                        raise
            self._tables_made = True

    @contextmanager
    def session(self) -> Iterator[Session]:
        if not self._tables_made:
            self._make_tables()
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def once(self, key: str, tool: str, output_model: type[ModelT], action: Callable[[Session], ModelT]) -> ModelT:
        """Run `action` at most once per key, in one transaction with the stored response."""
        with self.session() as session:
            seen = session.get(SandboxIdempotency, key)
            if seen is not None:
                return output_model.model_validate(seen.response)
            result = action(session)
            session.add(SandboxIdempotency(key=key, tool=tool, response=result.model_dump(mode="json")))
            try:
                session.commit()
            except IntegrityError:  # the same key committed first on another connection: its answer stands
                session.rollback()
                seen = session.get(SandboxIdempotency, key)
                if seen is None:
                    raise
                return output_model.model_validate(seen.response)
            return result
