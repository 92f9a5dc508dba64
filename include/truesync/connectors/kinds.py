"""The registry of kinds of system: a system's ``kind`` in ``systems.yaml`` picks one of these.

Adding a kind is a folder ``connectors/<kind>/`` (``__init__.py`` defining ``KIND``, the
connector module it names, and ``settings.py`` when the kind takes a block) and its package
in the registry line below. The configuration imports this module; it must stay as light
as the kind specs it lists (see ``connectors/kind.py``).
"""

from __future__ import annotations

from truesync.connectors import file, rest, sql
from truesync.connectors.kind import Kind

KINDS: dict[str, Kind] = {package.KIND.name: package.KIND for package in (sql, rest, file)}
