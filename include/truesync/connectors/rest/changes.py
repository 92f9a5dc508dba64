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

Each item is taken once: an item outside the window is dropped, a repeat is dropped unless
its change time is newer, and an item without a readable change time is kept, to be flagged.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from truesync.config import EntityMapping
from truesync.connectors.rest.paging import Items, first_page, listing, pages
from truesync.connectors.rest.session import Api, BadResponse
from truesync.connectors.rest.settings import EndpointConfig
from truesync.core.canonical import parse_utc_naive

TIE = timedelta(microseconds=1)


def _iso(value: datetime) -> str:
    """Naive times are UTC throughout the engine; the API is told so explicitly."""
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)).isoformat()


def changed(
    api: Api, endpoint: EndpointConfig, mapping: EntityMapping, start: datetime, end: datetime
) -> Iterator[Items]:
    """The items changed in ``[start, end)``, page by page, each once."""
    seen: dict[str, datetime | None] = {}
    for page in _by_change_time(api, endpoint, mapping, start, end):
        yield [i for i in page if _in_window(i.get(mapping.cursor), start, end) and _first_sight(i, mapping, seen)]


def incomplete(api: Api, endpoint: EndpointConfig, mapping: EntityMapping) -> Iterator[dict[str, Any]]:
    """The items lacking key or change time, when the endpoint can list them (``incomplete_params``)."""
    if endpoint.incomplete_params is None:
        return
    for item in listing(api, endpoint, dict(endpoint.incomplete_params)):
        if item.get(mapping.key) is None or parse_utc_naive(item.get(mapping.cursor)) is None:
            yield item


def _by_change_time(
    api: Api, endpoint: EndpointConfig, mapping: EntityMapping, start: datetime, end: datetime
) -> Iterator[Items]:
    """Pages of ``[start, end)`` read keyset-style, each tie group filling a page read on its own."""
    since = start
    while since < end:
        params = {**endpoint.params, endpoint.since_param: _iso(since), endpoint.until_param: _iso(end)}
        page, _ = first_page(api, endpoint, params)
        if not page:
            return
        times = _change_times(api, endpoint, mapping, page)
        yield page
        if times[0] == times[-1]:
            yield _tie_group(api, endpoint, mapping, times[-1])
            since = times[-1] + TIE
        else:
            since = times[-1]


def _change_times(api: Api, endpoint: EndpointConfig, mapping: EntityMapping, page: Items) -> list[datetime]:
    """The readable change times of a page, which must come in order: keyset paging relies on it."""
    times = [t for t in (parse_utc_naive(i.get(mapping.cursor)) for i in page) if t is not None]
    where = api.where("GET", endpoint.path)
    if not times:
        raise BadResponse(f"{where}: no item of the page has a readable '{mapping.cursor}' to page by")
    if times != sorted(times):
        raise BadResponse(f"{where}: the listing is not ordered by '{mapping.cursor}'")
    return times


def _tie_group(api: Api, endpoint: EndpointConfig, mapping: EntityMapping, ts: datetime) -> Items:
    """Every item changed at exactly ``ts``, read by key order, or refused when that is impossible."""
    params = {**endpoint.params, endpoint.since_param: _iso(ts), endpoint.until_param: _iso(ts + TIE)}
    if endpoint.key_after_param is not None:
        return _by_key(api, endpoint, endpoint.key_after_param, mapping, params)
    group: Items = []
    for number, page in enumerate(pages(api, endpoint, params)):
        if number and page:
            raise BadResponse(
                f"{api.where('GET', endpoint.path)}: more than {len(group)} items share change time "
                f"{_iso(ts)}, more than a page, and the endpoint has no key ordering (key_after_param)"
            )
        group += page
    return group


def _by_key(
    api: Api, endpoint: EndpointConfig, after_param: str, mapping: EntityMapping, params: dict[str, Any]
) -> Items:
    """A listing read in key order, each request asking for the keys after the last one seen."""
    found: Items = []
    after: str | None = None
    while True:
        page, _ = first_page(api, endpoint, params if after is None else {**params, after_param: after})
        if not page:
            return found
        last = page[-1].get(mapping.key)
        if last is None or (after is not None and str(last) <= after):
            raise BadResponse(f"{api.where('GET', endpoint.path)}: '{after_param}' does not page by key")
        found += page
        after = str(last)


def _in_window(value: Any, start: datetime, end: datetime) -> bool:
    """Inside ``[start, end)``; an item without a readable change time is kept, to be flagged."""
    ts = parse_utc_naive(value)
    return ts is None or start <= ts < end


def _first_sight(item: dict[str, Any], mapping: EntityMapping, seen: dict[str, datetime | None]) -> bool:
    """False for a repeat of an item already taken with the same or a newer change time."""
    key = item.get(mapping.key)
    if key is None:
        return True
    ts = parse_utc_naive(item.get(mapping.cursor))
    text = str(key)
    if text in seen:
        before = seen[text]
        if ts is None or (before is not None and ts <= before):
            return False
    seen[text] = ts
    return True
