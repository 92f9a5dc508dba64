"""Code table versions as first used: a version's content is fixed by the first run that used it.

A table whose codes changed while its version stayed the same would translate records
differently under one name; the records it translated could not be told apart, so
``truesync reprocess`` could not find them. Such a table stops the run instead.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from truesync.config import CodeTable
from truesync.connectors.errors import ConfigurationProblem
from truesync.store.core import Store, utcnow
from truesync.store.schema import code_tables


def register(store: Store, tables: list[CodeTable], run_id: str, where: str) -> None:
    """Record each table's version and content on first use; a known version with other content is refused.

    ``where`` is the directory of the configuration, for the message.
    """
    for table in tables:
        known = _known_hash(store, table)
        if known is None:
            try:
                with store.engine.begin() as conn:
                    conn.execute(code_tables.insert().values(name=table.name, version=table.version,
                                 content_hash=table.content_hash, first_used=utcnow(), run_id=run_id))  # fmt: skip
                continue
            except IntegrityError:  # another task registered it meanwhile
                known = _known_hash(store, table)
        if known != table.content_hash:
            raise ConfigurationProblem(
                f"{where}/codes/{table.name}.yaml: version: the codes changed but version '{table.version}' "
                "did not; bump the version so the records translated before can be found (truesync reprocess)"
            )


def _known_hash(store: Store, table: CodeTable) -> str | None:
    query = select(code_tables.c.content_hash).where(
        code_tables.c.name == table.name, code_tables.c.version == table.version
    )
    with store.engine.connect() as conn:
        return conn.execute(query).scalar()
