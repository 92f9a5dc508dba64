"""What every connector offers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Protocol

import pandas as pd
from sqlalchemy import Table

from truesync.config import EntityMapping


class Connector(Protocol):
    name: str

    def describe(self) -> str: ...

    def table(self, mapping: EntityMapping) -> Table:
        """The mapped columns and their types, reached once (an unreachable system fails here).

        Reflected for SQL; for REST a description of the endpoint's members, all text, as JSON
        carries canonical text unchanged. Writes take the Python type of each column from it.
        """
        ...

    def extract(self, mapping: EntityMapping, start: datetime, end: datetime, size: int) -> Iterator[pd.DataFrame]: ...

    def unwindowed_rows(self, mapping: EntityMapping, size: int) -> Iterator[pd.DataFrame]: ...

    def fetch(self, mapping: EntityMapping, keys: list[str]) -> pd.DataFrame: ...

    def fetch_by(self, mapping: EntityMapping, column: str, values: list[str]) -> pd.DataFrame: ...

    def write(self, mapping: EntityMapping, rows: list[dict[str, Any]], batch_size: int, run_id: str = "") -> int:
        """Create-or-update by key; ``run_id`` scopes idempotency keys where the system uses them."""
        ...
