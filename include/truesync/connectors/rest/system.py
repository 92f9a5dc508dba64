"""REST systems over ``requests``: an API as a source and a target of truesync.

An endpoint of the system plays the part of a table; its items are JSON objects whose
members play the part of columns. JSON carries values as text, so every member takes
``str`` and the canonical text goes over the wire unchanged. The work is done by
``session`` (requests, retries, errors), ``paging`` (listing styles), ``changes`` (windows
by change time) and ``writes`` (lookups by key, create-or-update); this module ties them
to the ``Source`` and ``Target`` roles and cuts items into frames of the asked size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import Any

import pandas as pd

from truesync.config import EntityMapping
from truesync.connectors.base import Ceilings, SoftMark
from truesync.connectors.errors import ConfigurationProblem
from truesync.connectors.rest import changes, paging, writes
from truesync.connectors.rest.connection import HttpConnection, http_connection
from truesync.connectors.rest.members import ItemReader
from truesync.connectors.rest.session import Api
from truesync.connectors.rest.settings import EndpointConfig, RestConfig
from truesync.support.bulk import Rows, as_dicts


class RestSystem:
    """One HTTP API: windowed listings, lookups by external key, create-or-update."""

    def __init__(self, name: str, config: RestConfig, conn: HttpConnection) -> None:
        self.name = name
        self.api = Api(name, config, conn)
        self._reached: set[str] = set()

    @classmethod
    def open(cls, name: str, settings: RestConfig, connection: str) -> RestSystem:
        """The system behind an Airflow connection holding its base URL and secret."""
        return cls(name, settings, http_connection(connection))

    def describe(self) -> str:
        return self.api.describe()

    def share_ceiling(self, ceilings: Ceilings) -> None:
        self.api.share_ceiling(ceilings)

    def _endpoint(self, mapping: EntityMapping) -> EndpointConfig:
        endpoint = self.api.config.endpoints.get(mapping.table)
        if endpoint is None:
            raise ConfigurationProblem(f"{self.describe()}: '{mapping.table}' is not an endpoint")
        return endpoint

    def columns(self, mapping: EntityMapping) -> dict[str, type | None]:
        """The endpoint's mapped members, all text; the first call checks the endpoint answers."""
        if mapping.table not in self._reached:
            endpoint = self._endpoint(mapping)
            size = {endpoint.pagination.size_param: 1}
            self.api.json(self.api.request("GET", endpoint.path, params=size), "GET", endpoint.path)
            self._reached.add(mapping.table)
        return dict.fromkeys(mapping.columns, str)

    def _reader(self, mapping: EntityMapping, envelope: bool = True) -> ItemReader:
        endpoint = self._endpoint(mapping)
        return ItemReader(endpoint, mapping, self.api.where("GET", endpoint.path), envelope)

    def extract(self, mapping: EntityMapping, start: datetime, end: datetime, size: int) -> Iterator[pd.DataFrame]:
        """Items changed in ``[start, end)``, each once (see ``changes``), in frames of ``size``."""
        reader = self._reader(mapping)
        pages = changes.changed(self.api, self._endpoint(mapping), reader, start, end)
        yield from _frames((item for page in pages for item in page), reader, size)

    def unwindowed_rows(self, mapping: EntityMapping, size: int) -> Iterator[pd.DataFrame]:
        """Items lacking key or change time, when the API can list them (``incomplete_params``).

        Read on every run, like the SQL connector's rows without key, so their exceptions stay
        open until the item is fixed.
        """
        reader = self._reader(mapping)
        yield from _frames(changes.incomplete(self.api, self._endpoint(mapping), reader), reader, size)

    def scan(self, mapping: EntityMapping, size: int, hidden: SoftMark = None) -> Iterator[pd.DataFrame]:
        """Every item of the endpoint's listing, page by page (a full compare reads the whole listing).

        The kind cannot delete (``deletes: report`` only), so no row is marked deleted: ``hidden``
        is always None. An endpoint of envelopes (events) lists changes, not records: the
        compare reads its ``records_endpoint`` instead, the listing of the records themselves.
        """
        endpoint = self._endpoint(mapping)
        if endpoint.record_path is not None:
            if endpoint.records_endpoint is None:
                raise ConfigurationProblem(
                    f"{self.describe()}: endpoint '{mapping.table}' lists envelopes ({endpoint.record_path}), "
                    "not records: name the endpoint listing the records in its records_endpoint for a full compare"
                )
            endpoint = self.api.config.endpoints[endpoint.records_endpoint]
        reader = ItemReader(endpoint, mapping, self.api.where("GET", endpoint.path))
        items = (item for page in paging.pages(self.api, endpoint, dict(endpoint.params)) for item in page)
        keyed = (item for item in items if reader.key(item) is not None)
        yield from _frames(keyed, reader, size)

    def require_unique_key(self, mapping: EntityMapping) -> None:
        """An endpoint's lookup by key returns one item per key: nothing to check."""
        self._endpoint(mapping)

    def folds_case(self, mapping: EntityMapping) -> bool:
        """Not known of an API: a lookup answered with a key in another case is held all the same (``holds``)."""
        return False

    def fetch(self, mapping: EntityMapping, keys: list[str], hidden: SoftMark = None) -> pd.DataFrame:
        """Current items for ``keys``, found by the endpoint's lookup parameter (``hidden``: None, see ``scan``)."""
        return _frame(writes.lookup(self.api, self._endpoint(mapping), mapping, keys), self._reader(mapping, False))

    def fetch_by(self, mapping: EntityMapping, column: str, values: list[str]) -> pd.DataFrame:
        """Current items whose ``column`` holds one of ``values`` (``lookup.by`` names the parameter)."""
        found = writes.lookup(self.api, self._endpoint(mapping), mapping, values, column)
        return _frame(found, self._reader(mapping, False), [column])

    def write(self, mapping: EntityMapping, rows: Rows, batch_size: int, run_id: str = "") -> int:
        """Create-or-update each row by its external key (see ``writes``); returns how many rows were written."""
        return writes.write(self.api, self._endpoint(mapping), mapping, as_dicts(rows), batch_size, run_id)


def _frames(items: Iterable[dict[str, Any]], reader: ItemReader, size: int) -> Iterator[pd.DataFrame]:
    """Items in frames of ``size`` (the last one shorter)."""
    stream = iter(items)
    while chunk := list(islice(stream, size)):
        yield _frame(chunk, reader)


def _frame(items: list[dict[str, Any]], reader: ItemReader, extra: list[str] | None = None) -> pd.DataFrame:
    """Items as a frame of the mapping's columns, each read by its member path (see ``members``)."""
    columns = list(dict.fromkeys(reader.mapping.columns + (extra or [])))
    return pd.DataFrame([reader.row(item, columns) for item in items], columns=columns, dtype=object)
