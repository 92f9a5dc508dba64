"""The file ledger: which files a flow read for an entity, and how far (``docs/design.md``, "File systems").

A run records a mark for each file it read; the marks count only once the run commits its
watermark, so a run that fails or is retried leaves the files to be read again. A file is
then skipped while its size, time and checksum match its committed mark.
"""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import delete, select, tuple_, update

from truesync.connectors.base import FileMark
from truesync.store.core import Store, utcnow
from truesync.store.schema import files

_MARK_COLUMNS = [files.c[name] for name in FileMark.__dataclass_fields__]


class Ledger:
    """The file ledger of one flow and entity, as one run sees it (a ``connectors.base.FileLedger``)."""

    def __init__(self, store: Store, flow: str, entity: str, run_id: str) -> None:
        self.store, self.flow, self.entity, self.run_id = store, flow, entity, run_id

    def committed(self) -> dict[str, FileMark]:
        """Path -> the mark of the committed run that read it last."""
        query = select(*_MARK_COLUMNS).where(
            files.c.flow == self.flow, files.c.entity == self.entity, files.c.committed.is_(True)
        )
        with self.store.engine.connect() as conn:
            return {row.path: FileMark(**row._mapping) for row in conn.execute(query.order_by(files.c.read_at))}

    def record(self, marks: list[FileMark]) -> None:
        """This run's marks, replacing those an earlier attempt of the run recorded."""
        mine = (files.c.flow == self.flow) & (files.c.entity == self.entity) & (files.c.run_id == self.run_id)
        rows = [
            {**asdict(m), "flow": self.flow, "entity": self.entity, "run_id": self.run_id, "committed": False,
             "read_at": utcnow()}
            for m in marks
        ]  # fmt: skip
        with self.store.engine.begin() as conn:
            conn.execute(delete(files).where(mine))
            if rows:
                conn.execute(files.insert(), rows)


def commit(store: Store, flow: str, run_id: str) -> int:
    """Make a run's marks count (it committed its watermark); older marks of the same files go.

    Returns how many files the run's marks cover.
    """
    mine = (files.c.flow == flow) & (files.c.run_id == run_id)
    read = select(files.c.entity, files.c.path).where(mine)
    superseded = (files.c.flow == flow) & (files.c.run_id != run_id) & tuple_(files.c.entity, files.c.path).in_(read)
    with store.engine.begin() as conn:
        conn.execute(delete(files).where(superseded))
        return conn.execute(update(files).where(mine).values(committed=True)).rowcount
