"""Systems of kind ``file``: CSV or JSON Lines files dropped in a folder or a bucket, read as a source.

The block ``file:`` (``settings.FileConfig``) declares datasets, each a glob of files; a
mapping's ``table`` names one. Where the files are (``file://``, ``s3://``, ``gs://``,
``sftp://``) and the credentials come from the Airflow connection (``location``); Airflow's
``ObjectStoragePath`` reaches them. ``reading`` turns one file into rows with their line
numbers, and ``system.FileSystem`` reads only files that are new or changed since a committed
run read them, by the flow's file ledger.
"""

from truesync.connectors.file.settings import FileConfig
from truesync.connectors.kind import Kind


def table_problem(settings: FileConfig, table: str) -> str | None:
    """A mapping's table must be one of the datasets."""
    return None if table in settings.datasets else f"'{table}' is not a dataset"


KIND = Kind(
    name="file",
    connector="truesync.connectors.file.system:FileSystem",
    docs="file-systems",
    settings=FileConfig,
    table_problem=table_problem,
    writes=False,
    composite_keys=True,
)
