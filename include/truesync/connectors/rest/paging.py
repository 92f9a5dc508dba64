"""Listing an endpoint page by page in its pagination style: page, offset, cursor, link or after_id.

Page and offset listings end on an empty page or when the total (``total_field``) is
reached, never on a short page: an API may cap the page size below ours. Cursor and link
listings end when no next token is given, whatever the page held; an empty page pointing
at itself as next is an error, not an endless loop. An ``after_id`` listing (Stripe's
``starting_after``) asks for the items after the last one read, by its ``id_field``, while
the body's ``more_field`` says more follow; a body without that flag, or an item without
an id to page after, is an answer not as configured. A next link must keep the base URL's
scheme and host, or it would carry the credentials elsewhere. Every page must hold a list
of objects (in ``items_field``, or as the body when that is ``''``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

from truesync.connectors.rest.session import Api, BadResponse
from truesync.connectors.rest.settings import EndpointConfig

Items = list[dict[str, Any]]


def items(
    api: Api, endpoint: EndpointConfig, response: requests.Response, need: str | None = None
) -> tuple[Items, Any]:
    """The item list of a listing page, and the body it came in; every item must hold ``need``."""
    body = api.json(response, "GET", endpoint.path)
    where = f"{api.where('GET', endpoint.path)}: status {response.status_code}"
    if endpoint.items_field and not isinstance(body, dict):
        raise BadResponse(f"{where}, the body is not an object holding '{endpoint.items_field}'", response.status_code)
    found = body.get(endpoint.items_field) if endpoint.items_field else body
    if not isinstance(found, list) or not all(isinstance(i, dict) for i in found):
        part = f"field '{endpoint.items_field}'" if endpoint.items_field else "the body"
        raise BadResponse(f"{where}, {part} is not a list of objects", response.status_code)
    lacking = next((i for i in found if need is not None and i.get(need) is None), None)
    if lacking is not None:
        raise BadResponse(f"{where}, an item has no '{need}' member", response.status_code)
    return found, body


def first_page(api: Api, endpoint: EndpointConfig, params: dict[str, Any]) -> tuple[Items, Any]:
    """The first page of a listing, whatever the pagination style: keyset reads need no more."""
    paging = endpoint.pagination
    query = {**params, paging.size_param: paging.page_size}
    if paging.style == "page":
        query[paging.page_param] = 1
    elif paging.style == "offset":
        query[paging.offset_param] = 0
    return items(api, endpoint, api.request("GET", endpoint.path, params=query))


def pages(api: Api, endpoint: EndpointConfig, params: dict[str, Any], need: str | None = None) -> Iterator[Items]:
    """Pages of a listing in the endpoint's pagination style, until the style says it ended."""
    paging = endpoint.pagination
    query: dict[str, Any] = {**params, paging.size_param: paging.page_size}
    url: str | None = None
    number, offset, token = 1, 0, None
    while True:
        if paging.style == "page":
            query[paging.page_param] = number
        elif paging.style == "offset":
            query[paging.offset_param] = offset
        elif paging.style in ("cursor", "after_id") and token is not None:
            query[paging.cursor_param if paging.style == "cursor" else paging.after_param] = token
        response = api.request("GET", endpoint.path, url=url, params=None if url else query)
        page, body = items(api, endpoint, response, need)
        if paging.style == "after_id":
            yield page
            following = _after(api, endpoint, page, body, response)
            if following is None:
                return
            if following == token:
                raise BadResponse(
                    f"{api.where('GET', endpoint.path)}: '{paging.after_param}' did not move the listing on"
                )
            token = following
            continue
        if paging.style in ("page", "offset"):
            if not page:
                return
            yield page
            number, offset = number + 1, offset + len(page)
            total = _total(api, endpoint, body, response)
            if total is not None and offset >= total:
                return
            continue
        yield page
        following = _next(api, endpoint, body, response)
        if following is None:
            return
        if not page and following in (token, url):
            raise BadResponse(f"{api.where('GET', endpoint.path)}: an empty page points at itself as next")
        if paging.style == "cursor":
            token = following
        else:
            url = following


def listing(
    api: Api, endpoint: EndpointConfig, params: dict[str, Any], need: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every item of a listing, page after page."""
    for page in pages(api, endpoint, params, need):
        yield from page


def _after(api: Api, endpoint: EndpointConfig, page: Items, body: Any, response: requests.Response) -> str | None:
    """The id to list after, or None when the body says no more items follow."""
    where = f"{api.where('GET', endpoint.path)}: status {response.status_code}"
    more = body.get(endpoint.pagination.more_field) if isinstance(body, dict) else None
    if not isinstance(more, bool):
        raise BadResponse(
            f"{where}, field '{endpoint.pagination.more_field}' is not true or false", response.status_code
        )
    if not more:
        return None
    last = page[-1].get(endpoint.id_field) if page else None
    if last is None or last == "":
        problem = "the page is empty" if not page else f"its last item has no '{endpoint.id_field}'"
        raise BadResponse(f"{where}, more items follow but {problem} to list after", response.status_code)
    return str(last)


def _next(api: Api, endpoint: EndpointConfig, body: Any, response: requests.Response) -> str | None:
    """The next page's token (cursor) or URL (link), or None at the end."""
    if endpoint.pagination.style == "link":
        url = response.links.get("next", {}).get("url")
        if url is not None:
            check_same_origin(api, url, endpoint.path)
        return url
    following = body.get(endpoint.pagination.next_field) if isinstance(body, dict) else None
    return str(following) if following else None


def _total(api: Api, endpoint: EndpointConfig, body: Any, response: requests.Response) -> int | None:
    """The listing's total when the endpoint names a ``total_field``."""
    if endpoint.total_field is None:
        return None
    total = body.get(endpoint.total_field) if isinstance(body, dict) else None
    if isinstance(total, bool) or not isinstance(total, int):
        raise BadResponse(
            f"{api.where('GET', endpoint.path)}: status {response.status_code}, "
            f"field '{endpoint.total_field}' is not a count",
            response.status_code,
        )
    return total


def check_same_origin(api: Api, url: str, path: str) -> None:
    """A next link elsewhere would carry the credentials to another host: refuse it."""
    base, link = urlsplit(api.base_url), urlsplit(url)
    if (base.scheme, base.netloc) != (link.scheme, link.netloc):
        raise BadResponse(f"{api.where('GET', path)}: next link points to another host")
