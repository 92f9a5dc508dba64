"""Data quality with Great Expectations: the checks on each batch, a run's health, Data Docs.

The only package that imports Great Expectations; DAG parsing never reaches it.
"""

import logging
import os

# Before any module of the package imports GX: no usage analytics leave the machine.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# Great Expectations logs ~200 INFO lines of its own while it is imported: kept out of the task logs.
logging.getLogger("great_expectations").setLevel(logging.WARNING)
