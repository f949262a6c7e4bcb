"""Alembic environment for caseplan's record database.

Run through `agent.schema` (or `caseplan db ...`), which hands over an open connection; there
is no alembic.ini. Only the record tables are under migration (`MANAGED_TABLES`); other
tables in the same database are left to their owners.
"""

from __future__ import annotations

from alembic import context

from agent.schema import MANAGED_TABLES, record_metadata

connection = context.config.attributes["connection"]


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    return type_ != "table" or name in MANAGED_TABLES


context.configure(
    connection=connection,
    target_metadata=record_metadata(),
    include_name=include_name,
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
