"""What the configuration knows of a kind of system, without loading its connector.

A kind's spec (``connectors/<kind>/__init__.py`` defining ``KIND``) and its block model
(``connectors/<kind>/settings.py``, pydantic only) are read whenever the configuration is
loaded, so they import nothing from truesync but ``truesync.support`` and each other. The
connector itself is named by a dotted path and imported only when a system is opened, so
loading the configuration never pays for HTTP clients or database reflection.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

DOCS = "docs/configuration.md"


def no_problem(*_: Any) -> str | None:
    """The cross-check of a kind that has nothing to check."""
    return None


@dataclass(frozen=True)
class Kind:
    """One kind of system: its name (also the YAML key of its block), connector, block model, checks and docs.

    ``table_problem(settings, table)`` says why a mapping's table does not fit the system, or
    None; ``lookup_problem(settings, table, member)`` says why the system cannot find records
    of that table by that member, or None. ``docs`` is the anchor of the kind's section in
    ``docs/configuration.md``. ``paths``: its records nest, so a mapping may read a member
    path (``metadata.invoice_id``) as a column. ``writes``: a flow may have it as its target.
    ``composite_keys``: an entity's key may span several of its columns (``core.keys``).
    """

    name: str
    connector: str  # "package.module:Class", a class with ``open(name, settings, connection)``
    docs: str
    settings: type[BaseModel] | None = None  # None: the kind takes no block
    deletes: bool = False  # a compare may delete or soft delete its records (``deletes: soft | delete``)
    paths: bool = False  # a mapping may read member paths into nested records
    writes: bool = True  # it can be a flow's target
    composite_keys: bool = False  # a key may be several columns
    table_problem: Callable[[Any, str], str | None] = no_problem
    lookup_problem: Callable[[Any, str, str], str | None] = no_problem

    @property
    def docs_link(self) -> str:
        """Where the kind is documented, for messages."""
        return f"{DOCS}#{self.docs}"

    def connector_class(self) -> Any:
        """The connector class, imported now: the configuration never needs it."""
        module, _, attribute = self.connector.partition(":")
        return getattr(importlib.import_module(module), attribute)
