"""Finding records by external key and writing them: create-or-update, native upsert, idempotency keys.

Records are found with the endpoint's ``lookup`` (``GET path?<param>=k1&<param>=k2``,
``max_keys`` keys a request, or one ``GET`` of ``lookup.path`` a key, where 404 means no
such record; ``lookup.by`` names the parameter of another member). A write
goes one request per record. With a native ``upsert`` call the record is sent to it; else
the batch is looked up by key and each record is created (POST) or updated (PATCH of the
fields that differ, or PUT of the whole record), and nothing is sent when nothing differs.
A key matching several records is not written.

Every create and update carries an ``Idempotency-Key``, so a retry whose first answer was
lost replays instead of applying twice (see :func:`idempotency_key`). A record the API
refuses (400, 409, 422) is skipped and reported at the end by ``RecordsRejected``, so one
bad record does not block the rest; any other failure stops the write, and what was sent
before stays.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

from truesync.config import EntityMapping
from truesync.connectors.errors import ConfigurationProblem, RecordsRejected
from truesync.connectors.rest.paging import Items, listing
from truesync.connectors.rest.session import Api, BadResponse
from truesync.connectors.rest.settings import EndpointConfig

REJECTED = frozenset({400, 409, 422})  # the API refuses this one record; others can still be written


def idempotency_key(*parts: Any) -> str:
    """A deterministic key for one write: every retry of it, and a rerun of it, sends the same key.

    Creates are keyed by the run, the record's key and content: urllib3's retries and
    Airflow's task retries share the run id, so they replay; a record deleted in the API and
    created again by a later run is a new write. Updates are keyed by the record as it was
    seen before the change, so a value changed back later is a new write too.
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


def lookup(
    api: Api,
    endpoint: EndpointConfig,
    mapping: EntityMapping,
    values: list[str],
    column: str | None = None,
    need: str | None = None,
) -> Items:
    """Items whose key (or ``column``) holds one of the values, ``max_keys`` values a request."""
    config = endpoint.lookup
    if config is None or (column is not None and column not in config.by):
        by = f" by '{column}'" if column else ""
        raise ConfigurationProblem(f"{api.describe()}: endpoint '{mapping.table}' has no lookup{by} configured")
    if column is None and config.path is not None:
        return [item for value in values if (item := _retrieve(api, config.path, value, config.params)) is not None]
    param = config.param if column is None else config.by[column]
    items: Items = []
    for start in range(0, len(values), config.max_keys):
        items += listing(api, endpoint, {**config.params, param: values[start : start + config.max_keys]}, need)
    return items


def _retrieve(api: Api, path: str, key: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """One record by its key, or None when the API answers 404."""
    try:
        response = api.request("GET", path, url=api.base_url + path.format(key=quote(key, safe="")), params=params)
    except BadResponse as exc:
        if exc.status == 404:
            return None
        raise
    found = api.json(response, "GET", path)
    if not isinstance(found, dict):
        raise BadResponse(f"{api.where('GET', path)}: status {response.status_code}, the body is not an object")
    return found


def write(
    api: Api,
    endpoint: EndpointConfig,
    mapping: EntityMapping,
    rows: list[dict[str, Any]],
    batch_size: int,
    run_id: str,
) -> int:
    """Create-or-update each row by its external key, ``batch_size`` looked up at a time; returns how many."""
    dropped = set(endpoint.read_only) | ({mapping.cursor} - set(mapping.fields.values()))
    clean = [{c: v for c, v in row.items() if c not in dropped} for row in rows]
    rejected: dict[str, str] = {}
    for start in range(0, len(clean), batch_size):
        batch = clean[start : start + batch_size]
        current = None if endpoint.upsert is not None else _current(api, endpoint, mapping, batch)
        for row in batch:
            key = str(row[mapping.key])
            try:
                if current is None:
                    _upsert(api, endpoint, mapping, row, run_id)
                else:
                    _create_or_update(api, endpoint, mapping, row, current.get(key, []), run_id)
            except BadResponse as exc:
                if exc.status not in REJECTED:
                    raise
                rejected[key] = str(exc)
    if rejected:
        raise RecordsRejected(rejected)
    return len(clean)


def _create_key(api: Api, mapping: EntityMapping, row: dict[str, Any], run_id: str) -> str:
    return idempotency_key(run_id, api.name, mapping.table, str(row[mapping.key]), row)


def _upsert(api: Api, endpoint: EndpointConfig, mapping: EntityMapping, row: dict[str, Any], run_id: str) -> None:
    assert endpoint.upsert is not None
    method = endpoint.upsert.method
    path = endpoint.upsert.path.format(key=quote(str(row[mapping.key]), safe=""))
    key = _create_key(api, mapping, row, run_id) if method == "POST" else None
    api.request(method, path, body=row, key=key)


def _current(
    api: Api, endpoint: EndpointConfig, mapping: EntityMapping, batch: list[dict[str, Any]]
) -> dict[str, Items]:
    """The API's records of the batch by key; each must carry the id its update URL needs."""
    current: dict[str, Items] = {}
    for item in lookup(api, endpoint, mapping, [str(r[mapping.key]) for r in batch], need=endpoint.id_field):
        current.setdefault(str(item.get(mapping.key)), []).append(item)
    return current


def _create_or_update(
    api: Api, endpoint: EndpointConfig, mapping: EntityMapping, row: dict[str, Any], matches: Items, run_id: str
) -> None:
    key = str(row[mapping.key])
    if len(matches) > 1:
        raise BadResponse(f"{api.where('GET', endpoint.path)}: key '{key}' matches {len(matches)} records; not written")
    if not matches:
        api.request("POST", endpoint.path, body=row, key=_create_key(api, mapping, row, run_id))
        return
    record = matches[0]
    changes = {c: v for c, v in row.items() if c != mapping.key and not _same(record.get(c), v)}
    if changes:
        path = f"{endpoint.path}/{quote(str(record[endpoint.id_field]), safe='')}"
        body = changes if endpoint.update_method == "PATCH" else {**_writable(record, endpoint), **changes}
        api.request(endpoint.update_method, path, body=body, key=idempotency_key(api.name, path, record, body))


def _writable(record: dict[str, Any], endpoint: EndpointConfig) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != endpoint.id_field and k not in endpoint.read_only}


def _same(current: Any, wanted: Any) -> bool:
    if current is None or wanted is None:
        return current is None and wanted is None
    return str(current) == str(wanted)
