"""Reading an endpoint by change time: a window ``[start, end)``, and the items no window can find.

Windows are read keyset-style on the change time: each request asks for ``[since, end)``
from the start of the listing, and the next request's ``since`` is the last change time
seen. Offsets shift when an item changes during the read (it leaves the window and every
later item moves up one place), so the next offset would skip an item; a request that
starts at the last change time cannot skip: it re-reads that time's items, which are
dropped by key. The listing must be ordered by change time (a page out of order fails).

A page made of one change time may be a tie group larger than a page; it is read on its
own, once, and the next request starts just after it. With ``key_after_param`` the group
is read in key order; without it a group larger than a page fails the task rather than
lose items, since an API may order ties differently from one request to the next.

A listing paged by the last item's id (``after_id``, Stripe's ``starting_after``) cannot
skip or repeat an item however many share a change time, so it is read in one pass, in
either order (``order: asc | desc``). Either window bound may be missing from the API's
parameters; the window is then cut here, and the read stops at the first item past it
(the listing's order says where that is). An API that reads its start bound as "after"
(``since_exclusive``) is sent the instant one unit of its ``time_format`` earlier.

Each item is taken once: an item outside the window is dropped; a repeat of a key is
dropped when its change time is older, or the same with the same content (a re-read); a
repeat at the same change time with other content is kept, so the engine's duplicate-key
check queues the conflict; an item without a readable change time is kept, to be flagged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from truesync.connectors.rest.members import UNIT, ItemReader, member, time_param
from truesync.connectors.rest.paging import Items, first_page, listing, pages
from truesync.connectors.rest.session import Api, BadResponse
from truesync.connectors.rest.settings import EndpointConfig
from truesync.core.canonical import EPOCH

TIE = UNIT["iso"]


def changed(api: Api, endpoint: EndpointConfig, reader: ItemReader, start: datetime, end: datetime) -> Iterator[Items]:
    """The items changed in ``[start, end)``, page by page, each once."""
    seen: dict[str, tuple[datetime | None, bytes]] = {}
    read = _by_last_id if endpoint.pagination.style == "after_id" else _by_change_time
    for page in read(api, endpoint, reader, start, end):
        timed = ((item, reader.change_time(item)) for item in page)
        yield [item for item, ts in timed if _in_window(ts, start, end) and _first_sight(item, ts, reader, seen)]


def incomplete(api: Api, endpoint: EndpointConfig, reader: ItemReader) -> Iterator[dict[str, Any]]:
    """The items lacking key or change time, when the endpoint can list them (``incomplete_params``)."""
    if endpoint.incomplete_params is None:
        return
    for item in listing(api, endpoint, dict(endpoint.incomplete_params)):
        if reader.key(item) is None or reader.change_time(item) is None:
            yield item


def _bounds(endpoint: EndpointConfig, start: datetime | None, end: datetime | None) -> dict[str, Any]:
    """The listing's parameters for a window, each bound sent only where the endpoint names its parameter.

    A window starting at the epoch (a full load) sends no start: the listing reads from its beginning.
    """
    params: dict[str, Any] = dict(endpoint.params)
    if start is not None and start > EPOCH and endpoint.since_param is not None:
        early = UNIT[endpoint.time_format] if endpoint.since_exclusive else timedelta(0)
        params[endpoint.since_param] = time_param(start - early, endpoint.time_format)
    if end is not None and endpoint.until_param is not None:
        params[endpoint.until_param] = time_param(end, endpoint.time_format)
    return params


def _by_last_id(
    api: Api, endpoint: EndpointConfig, reader: ItemReader, start: datetime, end: datetime
) -> Iterator[Items]:
    """Pages of a listing paged by the last item's id, until the window's far side is passed."""
    descending = endpoint.order == "desc"
    previous: datetime | None = None
    for page in pages(api, endpoint, _bounds(endpoint, start, end)):
        times = _change_times(reader, page, previous, descending)
        yield page
        if not times:
            continue
        previous = times[-1]
        if (end <= previous) if not descending else (previous < start):
            return


def _by_change_time(
    api: Api, endpoint: EndpointConfig, reader: ItemReader, start: datetime, end: datetime
) -> Iterator[Items]:
    """Pages of ``[start, end)`` read keyset-style, each tie group filling a page read on its own."""
    since = start
    while since < end:
        page, _ = first_page(api, endpoint, _bounds(endpoint, since, end))
        if not page:
            return
        times = _change_times(reader, page)
        if not times:
            raise BadResponse(
                f"{reader.where}: no item of the page has a readable '{reader.mapping.cursor}' to page by"
            )
        yield page
        if times[0] == times[-1]:
            yield _tie_group(api, endpoint, reader, times[-1])
            since = times[-1] + TIE
        else:
            since = times[-1]


def _change_times(
    reader: ItemReader, page: Items, previous: datetime | None = None, descending: bool = False
) -> list[datetime]:
    """The readable change times of a page, which must come in the listing's order, after ``previous``."""
    times = [t for t in (reader.change_time(i) for i in page) if t is not None]
    ordered = ([previous] if previous is not None else []) + times
    if ordered != sorted(ordered, reverse=descending):
        way = "newest first" if descending else "oldest first"
        raise BadResponse(f"{reader.where}: the listing is not ordered by '{reader.mapping.cursor}', {way}")
    return times


def _tie_group(api: Api, endpoint: EndpointConfig, reader: ItemReader, ts: datetime) -> Items:
    """Every item changed at exactly ``ts``, read by key order, or refused when that is impossible."""
    params = _bounds(endpoint, ts, ts + TIE)
    if endpoint.key_after_param is not None:
        return _by_key(api, endpoint, endpoint.key_after_param, reader, params)
    group: Items = []
    for number, page in enumerate(pages(api, endpoint, params)):
        if number and page:
            raise BadResponse(
                f"{reader.where}: more than {len(group)} items share change time "
                f"{time_param(ts, 'iso')}, more than a page, and the endpoint has no key ordering (key_after_param)"
            )
        group += page
    return group


def _by_key(api: Api, endpoint: EndpointConfig, after_param: str, reader: ItemReader, params: dict[str, Any]) -> Items:
    """A listing read in key order, each request asking for the keys after the last one seen."""
    found: Items = []
    after: str | None = None
    while True:
        page, _ = first_page(api, endpoint, params if after is None else {**params, after_param: after})
        if not page:
            return found
        last = reader.key(page[-1])
        if last is None or (after is not None and str(last) <= after):
            raise BadResponse(f"{reader.where}: '{after_param}' does not page by key")
        found += page
        after = str(last)


def _in_window(ts: datetime | None, start: datetime, end: datetime) -> bool:
    """Inside ``[start, end)``; an item without a readable change time is kept, to be flagged."""
    return ts is None or start <= ts < end


def _first_sight(
    item: dict[str, Any], ts: datetime | None, reader: ItemReader, seen: dict[str, tuple[datetime | None, bytes]]
) -> bool:
    """False for a repeat of a key already taken: without a readable change time (``ts``), with an
    older one, or with the same time and content. Content is remembered by a 16-byte digest, not the record.
    """
    record = reader.record(item)
    key = member(record, reader.mapping.key)
    if key is None:
        return True
    content = hashlib.blake2b(json.dumps(record, sort_keys=True, default=str).encode(), digest_size=16).digest()
    text = str(key)
    if text in seen:
        before, taken = seen[text]
        if ts is None or (before is not None and (ts < before or (ts == before and content == taken))):
            return False
    seen[text] = (ts, content)
    return True
