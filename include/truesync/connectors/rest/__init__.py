"""Systems of kind ``rest``: HTTP APIs read through windowed listings and written by external key.

The block ``rest:`` (``settings.RestConfig``) declares the endpoints; a mapping's ``table``
names one of them, and a reconciliation finds a target's records by another member only
through the endpoint's ``lookup.by``. The connector (``system.RestSystem``) is built from
``session`` (requests and errors), ``paging`` (listing styles), ``changes`` (windows by
change time) and ``writes`` (create-or-update by key).
"""

from truesync.connectors.kind import Kind
from truesync.connectors.rest.settings import RestConfig


def table_problem(settings: RestConfig, table: str) -> str | None:
    """A mapping's table must be one of the endpoints."""
    return None if table in settings.endpoints else f"'{table}' is not an endpoint"


def lookup_problem(settings: RestConfig, table: str, member: str) -> str | None:
    """Records are found by a member other than the key only through a ``lookup.by`` parameter."""
    lookup = settings.endpoints[table].lookup
    return None if lookup is not None and member in lookup.by else f"endpoint '{table}' has no lookup.by '{member}'"


KIND = Kind(
    name="rest",
    connector="truesync.connectors.rest.system:RestSystem",
    docs="rest-systems",
    settings=RestConfig,
    table_problem=table_problem,
    lookup_problem=lookup_problem,
    paths=True,
)
