"""Systems of kind ``sql``: any database SQLAlchemy and an installed driver can open.

The kind takes no block in ``systems.yaml``: the connection's URL says everything, and a
mapping's table and columns are checked against the database when a system is first reached.
"""

from truesync.connectors.kind import Kind

KIND = Kind(
    name="sql",
    connector="truesync.connectors.sql.system:SqlSystem",
    docs="sql-systems",
    deletes=True,
    composite_keys=True,
)
