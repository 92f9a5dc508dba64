"""The store: truesync's own database (SQLite by default, PostgreSQL in production)."""

from truesync.store.core import Store

__all__ = ["Store"]
